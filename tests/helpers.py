"""Shared test helpers: run the launcher as a user would, pointed at the tiny model and small data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SFT_RECIPE = ROOT / "recipes/smollm2-135m/v1/sft.yaml"
DPO_RECIPE = ROOT / "recipes/smollm2-135m/v1/dpo.yaml"
SFT_DATA = ROOT / "data/default/sft.jsonl"
DPO_DATA = ROOT / "data/default/dpo.jsonl"
GGUF_QUANTS = ["F16", "Q8_0", "Q4_K_M"]  # the GGUF types the tests export (release/gguf.py's defaults)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSONL and return the path."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def tiny_overrides(model: Path, data: Path) -> list[str]:
    """``--set`` arguments that put a shipped recipe on the tiny Llama-3 model and a small data file."""
    pairs = {
        "base_model": model,
        "chat_template": "llama3",  # Axolotl's Llama-3 template, as the OpenBioLLM recipes use
        "datasets.0.path": data,
        "sequence_len": 2048,  # the tiny tokenizer splits text finer than a real one
    }
    args = []
    for key, value in pairs.items():
        args += ["--set", f"{key}={value}"]
    return args


def launch(stage: str, recipe: Path, runs_dir: Path, *extra: str, env: dict | None = None,
           merged: bool = False) -> subprocess.CompletedProcess:
    """``python -m launch STAGE RECIPE --runs-dir RUNS ...``, from the repository root, output captured (``merged``:
    stderr into stdout, in the order a terminal shows them)."""
    command = [sys.executable, "-m", "launch", stage, str(recipe), "--runs-dir", str(runs_dir), *extra]
    return subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env, timeout=1200,
                          stderr=subprocess.STDOUT if merged else subprocess.PIPE)


def only_run(runs_dir: Path, stage: str) -> Path:
    """The single run folder of ``stage`` under ``runs_dir``."""
    found = [p for p in runs_dir.iterdir() if f"-{stage}-" in p.name]
    assert len(found) == 1, f"expected one {stage} run in {runs_dir}, found {[p.name for p in found]}"
    return found[0]


def refused_in_one_line(main, capsys, *argv: str) -> str:
    """``main(argv)`` ends with exit 2 and one line on stderr, no traceback; that line."""
    import pytest

    with pytest.raises(SystemExit) as end:
        main(list(argv))
    assert end.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err
