"""Hostile input to `python -m data_prep` and `python -m eval`: one line naming the file or key, exit 2, no traceback.

A row that cannot be decoded (latin-1 bytes, a lone surrogate, nesting too deep) is not an input error: it goes
to the rejects with its reason, like any other bad row, and the rest of the file converts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import ROOT

GOOD_ROWS = [{"messages": [{"role": "user", "content": f"What does the {organ} do?"},
                           {"role": "assistant", "content": f"The {organ} has a job, described at length."}]}
             for organ in ("liver", "kidney", "spleen", "pancreas")]
GOOD = "".join(json.dumps(row) + "\n" for row in GOOD_ROWS)
DEEP = "[" * 10_000 + "]" * 10_000
BOMB = "\n".join(["name:", '  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
                 + [f"  {b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)])
MIXTURE = "sft:\n  - source: messages\n    inputs: [{tmp}/good.jsonl]\n"
RESULTS_BYTES = bytes(range(256)) * 4
MEDMCQA = "".join(json.dumps({"id": f"q{n}", "question": f"Which option is number {n}?", "opa": "one", "opb": "two",
                              "opc": "three", "opd": "four", "cop": n}) + "\n" for n in (1, 2, 3, 4))


@dataclass
class Probe:
    """One hostile input: files written into the test folder, the command, and what a clear refusal names."""

    id: str
    argv: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    names: str = ""  # the one line must contain this (the file, line or key); {tmp} is the test folder
    usage: bool = False  # an argparse error: the usage lines come before the one error line


def mixture(text: str) -> dict[str, str]:
    return {"mix.yaml": text, "good.jsonl": GOOD}


PROBES = [
    # Refused: one line, exit 2.
    Probe("convert-deep-json-file", ["data_prep", "convert", "messages", "{tmp}/deep.json", "--out", "{tmp}/o.jsonl"],
          {"deep.json": DEEP}, names="{tmp}/deep.json"),
    Probe("convert-max-reject-rate-nan", ["data_prep", "convert", "messages", "{tmp}/good.jsonl", "--out",
                                          "{tmp}/o.jsonl", "--max-reject-rate", "nan"],
          {"good.jsonl": GOOD}, names="--max-reject-rate", usage=True),
    Probe("convert-max-reject-rate-negative", ["data_prep", "convert", "messages", "{tmp}/good.jsonl", "--out",
                                               "{tmp}/o.jsonl", "--max-reject-rate", "-1"],
          {"good.jsonl": GOOD}, names="--max-reject-rate", usage=True),
    Probe("convert-max-reject-rate-over-one", ["data_prep", "convert", "messages", "{tmp}/good.jsonl", "--out",
                                               "{tmp}/o.jsonl", "--max-reject-rate", "2"],
          {"good.jsonl": GOOD}, names="--max-reject-rate", usage=True),
    Probe("build-source-typo", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture(MIXTURE.replace("messages", "mesages")), names="{tmp}/mix.yaml: sft entry 1"),
    Probe("build-source-missing", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture(MIXTURE.replace("source: messages\n    inputs", "inputs")), names="{tmp}/mix.yaml: sft entry 1"),
    Probe("build-max-rows-negative", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture(MIXTURE + "    max_rows: -1\n"), names="{tmp}/mix.yaml: sft entry 1: max_rows"),
    Probe("build-max-rows-string", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture(MIXTURE + "    max_rows: ten\n"), names="{tmp}/mix.yaml: sft entry 1: max_rows"),
    Probe("build-mixture-not-a-mapping", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture("- source: messages\n"), names="{tmp}/mix.yaml"),
    Probe("build-mixture-empty", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture(""), names="{tmp}/mix.yaml"),
    Probe("build-inputs-a-string", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture(MIXTURE.replace("[{tmp}/good.jsonl]", "{tmp}/good.jsonl")),
          names="{tmp}/mix.yaml: sft entry 1: inputs"),
    Probe("build-python-object-tag", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture("name: !!python/object/apply:os.system ['echo pwned']\n" + MIXTURE), names="{tmp}/mix.yaml"),
    Probe("build-yaml-bomb-under-name", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture(BOMB + "\n" + MIXTURE), names="{tmp}/mix.yaml"),
    Probe("build-validation-fraction-over-one", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture("validation_fraction: 1.5\n" + MIXTURE), names="{tmp}/mix.yaml: validation_fraction"),
    Probe("build-decontaminate-ngram-zero", ["data_prep", "build", "{tmp}/mix.yaml", "--out", "{tmp}/b"],
          mixture("decontaminate:\n  benchmarks: data_prep/samples/benchmarks\n  ngram: 0\n" + MIXTURE),
          names="{tmp}/mix.yaml: decontaminate.ngram"),
    Probe("eval-run-limit-nan", ["eval", "run", "--model", "org/name", "--out", "{tmp}/e", "--limit", "nan"],
          names="--limit", usage=True),
    Probe("eval-run-batch-size-zero", ["eval", "run", "--model", "org/name", "--out", "{tmp}/e", "--batch-size", "0"],
          names="--batch-size", usage=True),
    Probe("eval-prepare-deep-row", ["eval", "prepare", "medmcqa", "{tmp}/deep.jsonl", "--out", "{tmp}/bench",
                                    "--allow-partial"],
          {"deep.jsonl": MEDMCQA + DEEP + "\n"}, names="{tmp}/deep.jsonl, line 5"),
    Probe("eval-run-missing-model", ["eval", "run", "--model", "{tmp}/no-such-model", "--out", "{tmp}/e"],
          names="{tmp}/no-such-model"),
    Probe("eval-report-binary-results", ["eval", "report", "{tmp}/results.json"],
          {"results.json": RESULTS_BYTES}, names="{tmp}/results.json"),
]

# Accepted: a BOM is not an error; undecodable rows go to the rejects with their reason.
BAD_ROW = '{"messages": [{"role": "user", "content": "CONTENT"}, {"role": "assistant", "content": "ok"}]}\n'
LATIN1 = GOOD.encode() + BAD_ROW.replace("CONTENT", "caf\u00e9").encode("latin-1")
SURROGATE = GOOD + BAD_ROW.replace("CONTENT", "\\ud800")
ROWS = [  # (id, file name, content, reason the one bad row is rejected for, or None when every row is kept)
    ("convert-latin1-row", "latin1.jsonl", LATIN1, "not valid UTF-8"),
    ("convert-lone-surrogate-row", "surrogate.jsonl", SURROGATE, "not valid UTF-8"),
    ("convert-deep-row", "deep.jsonl", GOOD + DEEP + "\n", "nested too deeply"),
    ("convert-bom-jsonl", "bom.jsonl", "\ufeff" + GOOD, None),
    ("convert-bom-json", "bom.json", "\ufeff" + json.dumps(GOOD_ROWS), None),
]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)


def write_files(tmp: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        content = content.replace("{tmp}", str(tmp)) if isinstance(content, str) else content
        (tmp / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


@pytest.mark.parametrize("probe", PROBES, ids=[p.id for p in PROBES])
def test_hostile_input_is_refused_in_one_line_naming_the_place(probe, tmp_path):
    write_files(tmp_path, probe.files)
    done = run([a.replace("{tmp}", str(tmp_path)) for a in probe.argv], tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    lines = done.stderr.strip().splitlines()
    if probe.usage:
        lines = lines[-1:]  # argparse: "usage: ..." lines, then one "error:" line
    assert len(lines) == 1, done.stderr
    assert probe.names.replace("{tmp}", str(tmp_path)) in lines[0], lines[0]
    assert not list(tmp_path.glob("b/*")) and not (tmp_path / "o.jsonl").exists()  # nothing written


@pytest.mark.parametrize(("name", "content", "reason"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_undecodable_rows_go_to_the_rejects_and_a_bom_is_accepted(name, content, reason, tmp_path):
    write_files(tmp_path, {name: content})
    done = run(["data_prep", "convert", "messages", str(tmp_path / name), "--out", str(tmp_path / "o.jsonl")],
               tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    kept = (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()
    rejects = [json.loads(line) for line in (tmp_path / "o.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(kept) == len(GOOD_ROWS)
    if reason is None:
        assert rejects == []
    else:
        assert [(r["where"], reason in r["reason"]) for r in rejects] == [(f"line {len(GOOD_ROWS) + 1}", True)]


def test_debug_shows_the_traceback(tmp_path):
    write_files(tmp_path, mixture("- source: messages\n"))
    done = run(["data_prep", "build", str(tmp_path / "mix.yaml"), "--out", str(tmp_path / "b"), "--debug"], tmp_path)
    assert done.returncode == 2
    assert "Traceback" in done.stderr and done.stderr.strip().endswith("(see data_prep/mixtures/default-v1.yaml)")
