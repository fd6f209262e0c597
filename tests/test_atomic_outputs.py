"""Outputs are replaced whole or not at all: a failed, stopped or interrupted build, convert or decontaminate leaves
the previous set.

The partial output of the failed run is kept in a staging folder the error names; `make data` rebuilds after it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DPO_DATA, ROOT, SFT_DATA, read_jsonl, write_jsonl

from common.files import sha256_file
from data_prep.build import build
from data_prep.convert import convert
from data_prep.sources import load_sources

ALPACA = ROOT / "data_prep/samples/alpaca.synthetic.jsonl"
MEDMCQA = ROOT / "data_prep/samples/medmcqa.synthetic.jsonl"
BUILD_FILES = ("sft.jsonl", "sft.validation.jsonl", "dpo.jsonl", "dpo.validation.jsonl", "rejects.jsonl",
               "manifest.json")


def mixture(path: Path, sft: Path, dpo: Path, dpo_source: str = "pref-messages") -> Path:
    """A small two-kind mixture: the sft kind is written first, so a failing dpo kind fails part-way."""
    path.write_text(f"name: small\nseed: 1\nvalidation_fraction: 0.25\n"
                    f"sft:\n  - source: messages\n    inputs: [{sft}]\n"
                    f"dpo:\n  - source: {dpo_source}\n    inputs: [{dpo}]\n", encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file directly in ``folder`` (staging folders aside), by name."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def staging_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and ".partial-" in p.name)


@pytest.fixture
def previous_build(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A complete build of a small mixture, and its files' bytes."""
    out = tmp_path / "build"
    build(mixture(tmp_path / "first.yaml", SFT_DATA, DPO_DATA), out)
    before = snapshot(out)
    assert set(before) == set(BUILD_FILES)
    return out, before


def fewer_sft_rows(tmp_path: Path) -> Path:
    """Different SFT rows than the previous build's, so a part-way build would change sft.jsonl."""
    return write_jsonl(tmp_path / "fewer.jsonl", read_jsonl(SFT_DATA)[:5])


def test_a_build_failing_part_way_leaves_the_previous_build_and_keeps_the_partial_one(previous_build, tmp_path):
    out, before = previous_build
    wrong = mixture(tmp_path / "wrong.yaml", fewer_sft_rows(tmp_path), MEDMCQA, dpo_source="pref-pairs")
    with pytest.raises(SystemExit, match="pref-pairs: more than 50% of rows rejected") as stop:
        build(wrong, out)
    assert snapshot(out) == before
    [stage] = staging_folders(out)
    assert f"previous output untouched, partial output kept in {stage}" in str(stop.value)
    assert len(read_jsonl(stage / "sft.jsonl")) + len(read_jsonl(stage / "sft.validation.jsonl")) == 5
    assert not (stage / "manifest.json").exists()


def test_a_successful_build_replaces_the_whole_set_and_removes_the_files_it_no_longer_writes(previous_build, tmp_path):
    out, _ = previous_build
    sft_only = tmp_path / "sft-only.yaml"
    sft_only.write_text(f"sft:\n  - source: messages\n    inputs: [{fewer_sft_rows(tmp_path)}]\n", encoding="utf-8")
    manifest = build(sft_only, out)
    assert sorted(snapshot(out)) == ["manifest.json", "rejects.jsonl", "sft.jsonl", "sft.validation.jsonl"]
    assert manifest["kinds"]["sft"]["outputs"]["sft.jsonl"]["sha256"] == sha256_file(out / "sft.jsonl")
    assert len(read_jsonl(out / "sft.jsonl")) == 5 and staging_folders(out) == []


# Holds a real `python -m data_prep build` at a known point (the second kind's split, when the first kind's files
# are staged) so the test can interrupt it there; the build itself is the real one.
HOLD = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as at a terminal, even where this test runs as a
# background job (its shell ignores SIGINT there, and Python keeps an ignored SIGINT ignored)
import data_prep.build as build
from data_prep.__main__ import main
ready, calls, split = Path(sys.argv[1]), [], build.split
def held(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        ready.touch()
        time.sleep(600)
    return split(*args, **kwargs)
build.split = held
main(sys.argv[2:])
"""


def test_ctrl_c_during_a_build_leaves_the_previous_build_intact(previous_build, tmp_path):
    out, before = previous_build
    ready = tmp_path / "ready"
    changed = mixture(tmp_path / "changed.yaml", fewer_sft_rows(tmp_path), DPO_DATA)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(ready), "build", str(changed), "--out", str(out),
                             "--quiet"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    [stage] = staging_folders(out)
    assert stderr.strip() == f"interrupted; {out}: previous output untouched; partial output kept in {stage}"
    assert snapshot(out) == before
    assert (stage / "sft.jsonl").is_file() and not (stage / "dpo.jsonl").exists()


def make(*args: str, data: Path, mix: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """`make` in the repository, its data target pointed at ``data`` and ``mix`` (model and venv stamps faked)."""
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "source.json").touch()
    stamp = tmp_path / "stamp"
    stamp.touch()  # newer than pyproject.toml: make never reinstalls the venv here
    return subprocess.run(["make", "--no-print-directory", *args, f"DATA_DIR={data}", f"MIXTURE={mix}",
                           f"MODEL_DIR={model}", f"STAMP={stamp}", f"PY={sys.executable}"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_make_data_rebuilds_after_a_failed_build(tmp_path):
    data, mix = tmp_path / "data", tmp_path / "mix.yaml"
    mixture(mix, SFT_DATA, DPO_DATA)
    assert make("data", data=data, mix=mix, tmp_path=tmp_path).returncode == 0
    assert make("-q", "data", data=data, mix=mix, tmp_path=tmp_path).returncode == 0  # up to date
    before = snapshot(data)

    mixture(mix, fewer_sft_rows(tmp_path), MEDMCQA, dpo_source="pref-pairs")
    failed = make("data", data=data, mix=mix, tmp_path=tmp_path)
    assert failed.returncode != 0 and "pref-pairs: more than 50% of rows rejected" in failed.stderr
    assert snapshot(data) == before  # the manifest is the old one: older than the mixture
    again = make("data", data=data, mix=mix, tmp_path=tmp_path)
    assert "Nothing to be done" not in again.stdout + again.stderr and again.returncode != 0  # it tries again

    mixture(mix, fewer_sft_rows(tmp_path), DPO_DATA)
    assert make("data", data=data, mix=mix, tmp_path=tmp_path).returncode == 0
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["kinds"]["sft"]["outputs"]["sft.jsonl"]["sha256"] == sha256_file(data / "sft.jsonl")
    assert make("-q", "data", data=data, mix=mix, tmp_path=tmp_path).returncode == 0


def test_convert_stopped_by_max_reject_rate_leaves_the_previous_set_untouched(tmp_path):
    alpaca, out = load_sources()["alpaca"], tmp_path / "out.jsonl"
    convert(alpaca, [str(ALPACA)], out, None)
    names = ("out.jsonl", "out.rejects.jsonl", "out.manifest.json")
    before = {name: (tmp_path / name).read_bytes() for name in names}
    with pytest.raises(SystemExit, match="alpaca: more than 50% of rows rejected") as stop:
        convert(alpaca, [str(MEDMCQA)], out, None)
    assert {name: (tmp_path / name).read_bytes() for name in names} == before
    manifest = json.loads(before["out.manifest.json"])
    assert manifest["output"]["sha256"] == sha256_file(out)  # the manifest still describes the files beside it
    assert manifest["rejects"]["sha256"] == sha256_file(tmp_path / "out.rejects.jsonl")
    [stage] = staging_folders(tmp_path)
    assert str(stage / "out.rejects.jsonl") in str(stop.value)
    assert len(read_jsonl(stage / "out.rejects.jsonl")) > 0 and not (stage / "out.jsonl").exists()


def test_decontaminate_failing_before_its_manifest_leaves_the_previous_set_untouched(tmp_path, monkeypatch):
    from data_prep import decontaminate

    benchmarks, out = ROOT / "data_prep/samples/benchmarks", tmp_path / "clean.jsonl"
    decontaminate.main([str(SFT_DATA), "--benchmarks", str(benchmarks), "--out", str(out)])
    names = ("clean.jsonl", "clean.contaminated.jsonl", "clean.manifest.json")
    before = {name: (tmp_path / name).read_bytes() for name in names}

    def disk_full(path: Path, data: object) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(decontaminate, "write_json_atomic", disk_full)
    fewer = write_jsonl(tmp_path / "fewer.jsonl", read_jsonl(SFT_DATA)[:5])
    with pytest.raises(OSError, match="No space left") as stop:
        decontaminate.main([str(fewer), "--benchmarks", str(benchmarks), "--out", str(out)])
    assert {name: (tmp_path / name).read_bytes() for name in names} == before
    manifest = json.loads(before["clean.manifest.json"])
    assert manifest["output"]["sha256"] == sha256_file(out)  # the manifest still describes the files beside it
    [stage] = staging_folders(tmp_path)
    assert any(f"partial output kept in {stage}" in note for note in stop.value.__notes__)
    assert len(read_jsonl(stage / "clean.jsonl")) <= 5 and not (stage / "clean.manifest.json").exists()
