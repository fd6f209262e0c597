"""Token lengths without loading transformers' tokenizer classes, encoding only the rows whose length matters.

Real tokenizers: the tests' tiny Llama-3-style byte-level BPE and, after ``make model``, SmolLM2's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import DPO_DATA, ROOT, SFT_DATA, read_jsonl

from data_prep import tokens
from data_prep.build import build
from data_prep.templates import LLAMA3_CHAT_TEMPLATE, plain_renderer
from data_prep.tokens import conversation, load_tokenizer, measure_lengths, missing, token_stats, tokens_at_most_bytes

SMOLLM2 = ROOT / "models/smollm2-135m-instruct"
MIXTURE = ROOT / "data_prep/mixtures/default-v1.yaml"
ODD_TEXTS = ["", " ", "a", "\n\n\n", "  leading and trailing  ", "é", "e\u0301", "ﬁ", "ﷺ", "㎏", "😀👍🏽", "中文医学",
             "\x00\x01\x7f", "x" * 3000, "<|eot_id|>", "<|im_end|>", "<|begin_of_text|><|eot_id|>", "\u200b\u00a0",
             "Dose: 2.5mg/kg q8h (max 40 mg)."]


def tokenizer_folders(tiny_llama3: Path) -> list[Path]:
    """The tiny tokenizer, and SmolLM2's where ``make model`` has run."""
    return [tiny_llama3, SMOLLM2] if (SMOLLM2 / "tokenizer.json").is_file() else [tiny_llama3]


def conversations() -> list[list[dict[str, str]]]:
    """The bundled rows' conversations (both sides of DPO rows), and odd texts as one-turn chats."""
    found = [conversation(row, side) for row in read_jsonl(DPO_DATA) for side in ("chosen", "rejected")]
    found += [row["messages"] for row in read_jsonl(SFT_DATA)]
    return found + [[{"role": "user", "content": text}, {"role": "assistant", "content": text[::-1]}]
                    for text in ODD_TEXTS]


def test_the_light_loader_renders_and_counts_as_apply_chat_template(tiny_llama3):
    from transformers import AutoTokenizer

    for folder in tokenizer_folders(tiny_llama3):
        reference, light = AutoTokenizer.from_pretrained(folder), load_tokenizer(folder)
        chats = conversations()
        texts = light.render(chats)
        assert texts == reference.apply_chat_template(chats, tokenize=False), folder
        expected = [len(reference.apply_chat_template(chat, tokenize=True, return_dict=False)) for chat in chats]
        assert tokens.encoded_lengths(light, texts) == expected, folder


def test_the_light_loader_leaves_torch_and_the_tokenizer_classes_unimported(tiny_llama3):
    code = ("import sys; from data_prep.tokens import load_tokenizer; "
            f"t = load_tokenizer({str(tiny_llama3)!r}); t.render([[{{'role': 'user', 'content': 'hi'}}]]); "
            "print(type(t.backend).__module__, 'torch' in sys.modules, "
            "'transformers.tokenization_utils_base' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tokenizers", "False", "False", "False"]  # Llama-3's template needs no jinja2


def test_llama3s_template_in_python_renders_what_jinja2_renders():
    special = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    plain = plain_renderer(LLAMA3_CHAT_TEMPLATE, special)
    assert plain is not None
    compiled = tokens.compile_template(LLAMA3_CHAT_TEMPLATE)
    spaces = "\u2028\x85\u3000\x1c\t\r\n\v\f\u00a0"
    chats = [*conversations(), [], [{"role": "system", "content": f"{spaces}sys{spaces}"}],
             [{"role": "user", "content": f"{text}{spaces}"} for text in ODD_TEXTS]]
    for chat in chats:
        assert plain(chat) == compiled.render(messages=chat, tools=None, documents=None, add_generation_prompt=False,
                                              **special), chat
    assert plain_renderer(LLAMA3_CHAT_TEMPLATE + " ", special) is None  # any other text: jinja2
    assert plain_renderer(LLAMA3_CHAT_TEMPLATE, {"eos_token": "<|eot_id|>"}) is None  # no BOS: jinja2 decides


def test_no_text_has_more_tokens_than_bytes_with_a_byte_level_bpe(tiny_llama3):
    for folder in tokenizer_folders(tiny_llama3):
        light = load_tokenizer(folder)
        assert tokens_at_most_bytes(light.backend), folder
        texts = light.render(conversations()) + ODD_TEXTS
        lengths = [len(e) for e in light.backend.encode_batch(texts, add_special_tokens=False)]
        assert all(n <= len(text.encode()) for n, text in zip(lengths, texts, strict=True)), folder
        assert any(n == len(text.encode()) for n, text in zip(lengths, texts, strict=True) if text)  # tight


def test_a_tokenizer_that_adds_text_is_always_encoded():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    metaspace = Tokenizer(models.BPE(unk_token="<unk>"))
    metaspace.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    metaspace.train_from_iterator(["a b"], trainers.BpeTrainer(vocab_size=4, special_tokens=["<unk>"]))  # no merges
    assert len(metaspace.encode("a").ids) > len(b"a")  # the prefix "▁" is a token of its own: the bound fails
    assert not tokens_at_most_bytes(metaspace)
    nfkc = Tokenizer(models.BPE())
    nfkc.normalizer, nfkc.pre_tokenizer = normalizers.NFKC(), pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert not tokens_at_most_bytes(nfkc)  # NFKC turns the 3 bytes of "ﷺ" into 33


def many_rows() -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"Case {i}: " + "which enzyme is deficient? " * (i % 40)},
                          {"role": "assistant", "content": "Glucose-6-phosphatase. " * (i % 7)}]} for i in range(120)]


def test_only_sampled_rows_and_rows_that_may_be_too_long_are_encoded(tiny_llama3, monkeypatch):
    monkeypatch.setattr(tokens, "SAMPLE_ROWS", 30)
    rows, limit = many_rows(), 200
    exact = tokens.token_lengths(rows, tiny_llama3, workers=1)
    lengths, sampled = measure_lengths(rows, tiny_llama3, workers=1, sequence_len=limit)
    assert 10 < sum(sampled) < 60 and None in lengths
    assert all(n is None or n == e for n, e in zip(lengths, exact, strict=True))
    assert all(n is not None for n, e in zip(lengths, exact, strict=True) if e > limit)  # the filter stays exact
    assert all(n is not None for n, s in zip(lengths, sampled, strict=True) if s)
    again = measure_lengths(rows[::-1], tiny_llama3, workers=2, sequence_len=limit)
    assert again == (lengths[::-1], sampled[::-1])  # chosen by content: any order, any worker count
    stats = token_stats(lengths, Path("tok"), limit, sampled)
    assert stats["rows"] == 120 and stats["sampled"]["rows"] == sum(sampled) and stats["sampled"]["of"] == 120
    assert stats["over_sequence_len"] == sum(e > limit for e in exact) > 0
    assert sorted(e for e, s in zip(exact, sampled, strict=True) if s)[-1] == stats["p100"]


def test_a_sampled_build_writes_the_same_data_files(tiny_llama3, tmp_path, monkeypatch):
    full = build(MIXTURE, tmp_path / "full", tokenizer=tiny_llama3)  # under SAMPLE_ROWS rows: every row encoded
    assert "sampled" not in full["kinds"]["sft"]["tokens"]
    monkeypatch.setattr(tokens, "SAMPLE_ROWS", 20)
    sampled = build(MIXTURE, tmp_path / "sampled", tokenizer=tiny_llama3)
    for name in ("sft.jsonl", "sft.validation.jsonl", "dpo.jsonl", "dpo.validation.jsonl", "rejects.jsonl"):
        assert (tmp_path / "sampled" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    stats, before = sampled["kinds"]["sft"]["tokens"], full["kinds"]["sft"]["tokens"]
    assert stats["over_sequence_len"] == before["over_sequence_len"] > 0
    assert stats["rows"] == before["rows"] and 0 < stats["sampled"]["rows"] < stats["rows"]
    manifest = json.loads((tmp_path / "sampled/manifest.json").read_text())
    assert manifest["kinds"]["sft"]["tokens"]["sampled"]["of"] == stats["rows"]


def test_a_build_whose_dedup_halves_the_rows_samples_as_if_it_measured_the_final_rows(tiny_llama3, tmp_path,
                                                                                        monkeypatch):
    """The build's one pass samples from every converted row; the rows the smaller final set adds are encoded after."""
    mixture = yaml.safe_load(MIXTURE.read_text())
    for entry in mixture["sft"]:
        entry["inputs"] = entry["inputs"] * 2  # every row twice: dedup removes half
    mixture["sequence_len"] = 100_000  # no row may be over it: only the sample is encoded
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(mixture))
    monkeypatch.setattr(tokens, "SAMPLE_ROWS", 20)
    finished = []
    monkeypatch.setattr(tokens, "missing", lambda *args: finished.append(missing(*args)) or finished[-1])
    stats = build(tmp_path / "mix.yaml", tmp_path / "out", tokenizer=tiny_llama3)["kinds"]["sft"]["tokens"]
    assert sum(finished[0]) > 0  # the sft pass sampled fewer rows than its final set needs
    final = [*read_jsonl(tmp_path / "out/sft.jsonl"), *read_jsonl(tmp_path / "out/sft.validation.jsonl"),
             *(r["row"] for r in read_jsonl(tmp_path / "out/rejects.jsonl")
               if r["kind"] == "sft" and r["stage"] == "length")]
    lengths, chosen = measure_lengths(final, tiny_llama3, workers=2, sequence_len=stats["sequence_len"])
    assert token_stats(lengths, tiny_llama3, stats["sequence_len"], chosen) == stats
