"""One CLI convention: ``python -m PACKAGE --help`` (launch, data_prep, eval, release) lists every subcommand,
without torch or Axolotl."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT

from launch.registry import COMMANDS as LAUNCH_COMMANDS

HEAVY = ("torch", "axolotl", "transformers", "lm_eval", "datasets")
# Runs the module's --help in-process and reports what it printed and which heavy packages it imported.
PROBE = """
import contextlib, io, json, runpy, sys
out = io.StringIO()
sys.argv = ["x", "--help"]
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module(sys.argv_module, run_name="__main__")
    except SystemExit as end:
        code = end.code
print(json.dumps({"out": out.getvalue(), "code": code, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def help_of(module: str) -> dict:
    code = f"import sys; sys.argv_module = {module!r}; HEAVY = {HEAVY!r}\n" + PROBE
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("module, commands", [
    ("launch", list(LAUNCH_COMMANDS)),
    ("data_prep", ["convert", "decontaminate", "build"]),
    ("eval", ["prepare", "run", "generate-check", "report"]),
    ("release", ["generate", "chat", "build", "publish"]),
])
def test_help_lists_every_subcommand_without_importing_torch_or_axolotl(module, commands):
    shown = help_of(module)
    assert shown["code"] in (0, None)
    missing = [name for name in commands if f" {name}" not in shown["out"] and f"{{{name}" not in shown["out"]]
    assert not missing, shown["out"]
    assert shown["heavy"] == [], f"python -m {module} --help imported {shown['heavy']}"


def test_launch_help_lists_the_commands_that_used_to_be_hidden():
    out = help_of("launch")["out"]
    for name in ("check", "plan", "reproduce", "chain", "sft", "dpo", "merge", "eval"):
        assert f"python -m launch {name} " in out


def test_every_launch_command_dispatches_to_a_module_with_a_main():
    import importlib

    for command in LAUNCH_COMMANDS.values():
        assert callable(importlib.import_module(command.module).main), command.name
