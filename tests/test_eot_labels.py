"""Every assistant turn's <|eot_id|> carries a label, whatever the tokenizer's eos: the test v1 lacked.

The 8B recipe fine-tunes base Meta-Llama-3-8B, whose eos is <|end_of_text|>; Instruct's is <|eot_id|>.
The conftest tokenizer is Instruct-like, so the tests never saw v1's defect. Here two tiny Llama-3
tokenizers, one configured like each, go through Axolotl's real preprocessing (validate_config,
normalize_config, load_datasets: its chat_template strategy) with a released recipe's data settings,
and the labels are read back token by token.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, read_jsonl

LATEST_SFT = {model: sorted((ROOT / "recipes" / model).glob("v*/sft.yaml"), key=lambda p: int(p.parent.name[1:]))[-1]
              for model in ("openbiollm-8b", "openbiollm-70b")}
V1_8B = ROOT / "recipes/openbiollm-8b/v1/sft.yaml"


@pytest.fixture(scope="module")
def tokenizers(tiny_llama3, tmp_path_factory) -> dict[str, Path]:
    """The tiny Llama saved twice: tokenizer eos <|end_of_text|> without a template (like base Meta-Llama-3-8B),
    and eos <|eot_id|> with Meta's template (like Meta-Llama-3-*-Instruct, the conftest default)."""
    from transformers import AutoTokenizer

    folders = {}
    for name, eos in (("base", "<|end_of_text|>"), ("instruct", "<|eot_id|>")):
        folder = tmp_path_factory.mktemp(f"tiny-{name}")
        for item in tiny_llama3.iterdir():
            if not item.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy(item, folder / item.name)
        tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
        tokenizer.eos_token = eos
        tokenizer.pad_token = None
        if name == "base":
            tokenizer.chat_template = None
        tokenizer.save_pretrained(folder)
        assert AutoTokenizer.from_pretrained(folder).eos_token == eos
        folders[name] = folder
    return folders


def labelled_rows(recipe: Path, model: Path, data: Path, out: Path) -> tuple[list[dict], object]:
    """Axolotl's preprocessing of ``data`` with ``recipe``'s data settings on ``model``: rows and tokenizer."""
    from axolotl.common.datasets import load_datasets
    from axolotl.loaders.tokenizer import load_tokenizer
    from axolotl.utils.config import normalize_cfg_datasets, normalize_config, validate_config
    from axolotl.utils.dict import DictDefault

    config = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    config.pop("test_datasets", None)
    config["datasets"][0]["path"] = str(data)
    config |= {"base_model": str(model), "sequence_len": 2048, "output_dir": str(out),
               "dataset_prepared_path": str(out / "prepared"), "bf16": False, "tf32": False,
               "attn_implementation": "sdpa", "val_set_size": 0, "evals_per_epoch": None}
    cfg = validate_config(DictDefault(json.loads(json.dumps(config))))
    normalize_config(cfg)
    normalize_cfg_datasets(cfg)
    return list(load_datasets(cfg=cfg).train_dataset), load_tokenizer(cfg)


def after_each_answer(rows: list[dict], tokenizer, source: list[dict]) -> list[tuple[str, bool]]:
    """For every assistant turn in the rows: the token right after its text, and whether it carries a label."""
    found = []
    answers = [m["content"].strip() for row in source for m in row["messages"] if m["role"] == "assistant"]
    for row in rows:
        ids, labels = row["input_ids"], row["labels"]
        for answer in answers:
            piece = tokenizer(answer, add_special_tokens=False)["input_ids"]
            starts = [i for i in range(len(ids) - len(piece)) if ids[i:i + len(piece)] == piece]
            found += [(tokenizer.convert_ids_to_tokens(ids[i + len(piece)]), labels[i + len(piece)] != -100)
                      for i in starts]
    return found


@pytest.mark.parametrize("kind", ["base", "instruct"])
@pytest.mark.parametrize("model", sorted(LATEST_SFT), ids=str)
def test_latest_recipe_trains_eot_id_after_every_assistant_turn(model, kind, tokenizers, small_data, tmp_path):
    rows, tokenizer = labelled_rows(LATEST_SFT[model], tokenizers[kind], small_data["sft"], tmp_path)
    source = read_jsonl(small_data["sft"])
    found = after_each_answer(rows, tokenizer, source)
    turns = sum(m["role"] == "assistant" for row in source for m in row["messages"])
    assert len(rows) == len(source) and len(found) >= turns  # every answer was found in its row
    assert {token for token, _ in found} == {"<|eot_id|>"}
    assert all(trained for _, trained in found), f"{LATEST_SFT[model]} leaves an <|eot_id|> unlabelled on {kind}"


def test_v1_8b_settings_leave_eot_id_unlabelled_on_the_base_tokenizer(tokenizers, small_data, tmp_path):
    rows, tokenizer = labelled_rows(V1_8B, tokenizers["base"], small_data["sft"], tmp_path)
    found = after_each_answer(rows, tokenizer, read_jsonl(small_data["sft"]))
    assert found and {token for token, _ in found} == {"<|eot_id|>"}
    assert not any(trained for _, trained in found)  # v1's defect: the model never learns to stop


def test_v1_8b_settings_do_train_eot_id_on_an_instruct_tokenizer(tokenizers, small_data, tmp_path):
    """Why the old tests passed: with eos <|eot_id|>, v1's settings train it."""
    rows, tokenizer = labelled_rows(V1_8B, tokenizers["instruct"], small_data["sft"], tmp_path)
    found = after_each_answer(rows, tokenizer, read_jsonl(small_data["sft"]))
    assert found and all(trained for _, trained in found)
