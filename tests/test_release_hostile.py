"""Hostile input to ``python -m release`` and the inference surface: one line, no traceback, nothing half-written,
and nothing that runs for minutes on input that cannot work.

Real runs on the tiny models of tests/conftest.py (and tests/test_release_build.py's release of them); the only
mock is none: ``publish`` without a network is pointed at a closed local port (HF_ENDPOINT), so the hub client
fails as it does offline.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, refused_in_one_line
from test_release_build import make_runs, summary
from test_release_generate import WORD_ID, rigged

from release.__main__ import main
from release.build import build_release

LONG = "anemia " * 3000  # about 3,000 tokens: more than the tiny models' 2,048-token context


@pytest.fixture(scope="module")
def models(tiny_llama3, tmp_path_factory) -> dict[str, Path]:
    """Rigged tiny Llama-3 models (tests/test_release_generate.py): one always ends its turn, one never does."""
    root = tmp_path_factory.mktemp("hostile-rigged")
    return {name: rigged(tiny_llama3, root / name, emits, eos="<|end_of_text|>")
            for name, emits in (("eot", "<|eot_id|>"), ("word", WORD_ID))}


@pytest.fixture(scope="module")
def merged(models) -> Path:
    return models["eot"]


@pytest.fixture
def checked_release(merged, tmp_path) -> Path:
    """A release with real results, as tests/test_release_build.py builds it (no GGUF)."""
    real = summary(False, {"pubmedqa": (0.5, 500), "medmcqa": (0.25, 4183), "mmlu_anatomy": (0.4, 135)})
    return build_release(make_runs(tmp_path, merged, real), out=tmp_path / "releases")


class Piped:
    """stdin that is not a terminal, with the bytes a pipe would give."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False


def refused(capsys, *argv: str) -> str:
    return refused_in_one_line(main, capsys, *argv)


def release_cli(*argv: str | bytes, stdin: bytes = b"", env: dict | None = None, cwd: Path = ROOT
                ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "release", *argv], cwd=cwd, input=stdin, capture_output=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def one_line(done: subprocess.CompletedProcess, code: int) -> str:
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == code and "Traceback" not in err, (done.returncode, err[-3000:])
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: the input is refused before it."""
    import release.generate

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(release.generate, "load_model", load)


# 1. Invalid UTF-8 or a lone surrogate in a prompt.

@pytest.mark.parametrize(("line", "reason"), [
    (b'{"prompt": "caf\xe9"}\n', "stdin line 2: not UTF-8 text (byte 16)"),
    (b'{"prompt": "bad \\ud800 escape"}\n', "stdin line 2: prompt: not UTF-8 text (character 5 is '\\ud800'"),
    (b'{"prompt": "ok", "system": "\\udcff"}\n', "stdin line 2: system: not UTF-8 text"),
], ids=["latin1-byte", "lone-surrogate-prompt", "lone-surrogate-system"])
def test_a_bad_jsonl_line_after_a_good_one_is_refused_before_the_model_loads(line, reason, models, capsys,
                                                                           monkeypatch, no_model_load):
    monkeypatch.setattr(sys, "stdin", Piped(b'{"prompt": "What is anemia?"}\n' + line + b'{"prompt": "x"}\n'))
    assert reason in refused(capsys, "generate", str(models["eot"]))


def test_an_undecodable_command_line_prompt_is_one_line_naming_it(models):
    done = release_cli("generate", str(models["eot"]), "fine", b"caf\xe9")
    assert "PROMPT 2: not UTF-8 text (character 4 is '\\udce9'" in one_line(done, 2)
    assert done.stdout == b""  # the good prompt before it is not answered either


def test_a_chat_line_that_is_not_utf8_is_refused_and_the_chat_goes_on(models):
    done = release_cli("chat", str(models["eot"]), stdin=b"hello\ncaf\xe9 au lait\nagain\n/exit\n")
    err = done.stderr.decode()
    assert done.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert "[line 2: user message: not UTF-8 text (character 4 is '\\udce9'" in err
    assert done.stdout.decode().count("model> ") == 2  # hello and again answered


# 2. A prompt longer than the model's context: refused within seconds, before any generation.

def test_a_prompt_over_the_context_is_refused_in_seconds_and_nothing_is_answered(models, capsys, monkeypatch):
    started = time.monotonic()
    line = refused(capsys, "generate", str(models["word"]), "short", LONG)
    assert time.monotonic() - started < 60
    assert line.startswith("error: PROMPT 2: ") and "exceed the model's 2048-token context" in line
    monkeypatch.setattr(sys, "stdin", Piped(b'{"prompt": "short"}\n\n' + json.dumps({"prompt": LONG}).encode()))
    assert "stdin line 3: " in refused(capsys, "generate", str(models["word"]))
    assert capsys.readouterr().out == ""


def test_respond_itself_refuses_a_prompt_over_the_context(models):
    from common.errors import InputError
    from inference.model_source import find_source, load_model
    from inference.reply import Decoding, respond

    model, tokenizer = load_model(find_source(models["word"]))
    with pytest.raises(InputError, match="2048-token context"):
        respond(model, tokenizer, [{"role": "user", "content": LONG}], Decoding())


def test_a_chat_line_over_the_context_is_refused_and_the_chat_goes_on(models):
    done = release_cli("chat", str(models["eot"]), stdin=f"hello\n{LONG}\n/exit\n".encode())
    err = done.stderr.decode()
    assert done.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert "[line 2: " in err and "2048-token context: not sent]" in err


@pytest.fixture(scope="module")
def tiny_gguf(tiny, tools, tmp_path_factory) -> Path:
    from release import gguf

    out = tmp_path_factory.mktemp("hostile-gguf")
    [path] = gguf.export(tiny, out, "tiny", ["F16"], tools, out / "export.log")
    return path


@pytest.mark.slow
def test_the_gguf_path_refuses_bad_text_and_an_overlong_prompt_in_one_line(tiny_gguf, capsys, monkeypatch):
    started = time.monotonic()
    line = refused(capsys, "generate", str(tiny_gguf), "short", LONG)
    assert time.monotonic() - started < 60
    assert line.startswith("error: PROMPT 2: ") and "exceed the model's 2048-token context" in line
    done = release_cli("generate", str(tiny_gguf), b"caf\xe9")
    assert "PROMPT 1: not UTF-8 text" in one_line(done, 2)
    done = release_cli("chat", str(tiny_gguf), stdin=b"caf\xe9\n/exit\n")
    assert done.returncode == 0 and "[line 1: user message: not UTF-8 text" in done.stderr.decode()


# 3. A truncated adapter in a run without merged/.

def test_a_truncated_adapter_is_one_line_naming_the_file(models, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    shutil.copytree(models["word"], tmp_path / "models" / "tiny")
    run = tmp_path / "runs" / "20260101-000000-sft-tiny"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"run_id": run.name, "stage": "sft", "status": "succeeded",
                                                   "base_model": {"id": "models/tiny", "local": True}}))
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "models" / "tiny"), lora).save_pretrained(
        run / "adapter")
    weights = run / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    line = refused(capsys, "generate", str(run), "hi")
    assert f"{weights}: truncated or damaged" in line
    weights.write_bytes(b"\x00" * 4)
    assert f"{weights}: not a whole safetensors file" in refused(capsys, "generate", str(run), "hi")


# 4. Publish without a network.

def test_publish_without_a_network_is_one_line_and_exit_1(checked_release):
    before = (checked_release / "release.json").read_bytes()
    done = release_cli("publish", str(checked_release), "--repo", "org/tiny",
                       env={"HF_TOKEN": "hf_not_a_real_token", "HF_HUB_OFFLINE": "0",
                            "HF_ENDPOINT": "http://127.0.0.1:9"})  # a closed port: as no network
    line = one_line(done, 1)
    assert "publish to org/tiny: the hub could not be reached" in line and "nothing was published" in line
    assert (checked_release / "release.json").read_bytes() == before


# 5. A release.json that is not a release record.

@pytest.mark.parametrize(("text", "reason"), [
    ("[1, 2]", "not a release record"),
    ("{", "not JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
    ('{"files": []}', "not a release record"),
])
def test_a_broken_release_json_is_one_line_naming_it(text, reason, tmp_path, capsys):
    (tmp_path / "release.json").write_text(text)
    line = refused(capsys, "publish", str(tmp_path), "--repo", "org/tiny", "--dry-run")
    assert f"{tmp_path / 'release.json'}: {reason}" in line


# 6. Smaller faults of release build and publish.

def test_a_bad_name_names_name_and_an_out_that_is_a_file_says_so(merged, tmp_path, capsys):
    run = make_runs(tmp_path, merged, None)
    line = refused(capsys, "build", str(run), "--name", "../x", "--quant", "none")
    assert line.startswith("error: --name '../x': ") and "--run-id" not in line
    (tmp_path / "afile").write_text("")
    line = refused(capsys, "build", str(run), "--out", str(tmp_path / "afile"), "--quant", "none")
    assert f"--out {tmp_path / 'afile'}: is a file" in line


def test_a_release_names_its_run_absolutely_and_its_weights_are_readable(merged, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = make_runs(tmp_path, merged, None)
    weights = run / "merged" / "model.safetensors"
    weights.chmod(0o600)  # as a merge may leave it
    release = build_release(run.relative_to(tmp_path), out=Path("releases"))
    record = json.loads((release / "release.json").read_text())
    assert [Path(r["path"]).is_absolute() for r in record["runs"]] == [True, True]
    assert Path(record["runs"][-1]["path"]) == run.resolve()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in release.iterdir() if p.is_file()}
    umask = os.umask(0)
    os.umask(umask)
    assert modes["model.safetensors"] == 0o666 & ~umask == modes["config.json"], modes


def test_the_dry_run_lists_what_a_publish_sends(checked_release, capsys, monkeypatch):
    from huggingface_hub import HfApi

    sent = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, *a, **kw: None)  # the hub's network API only
    monkeypatch.setattr(HfApi, "create_commit", lambda self, repo, operations, **kw: sent.extend(
        op.path_in_repo for op in operations) or type("Info", (), {"oid": "f" * 40})())
    main(["publish", str(checked_release), "--repo", "org/tiny", "--dry-run"])
    listed = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[:-1]]
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    main(["publish", str(checked_release), "--repo", "org/tiny"])
    assert listed == sent and "release.json" in listed
