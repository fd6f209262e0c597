"""``make help`` prints the Makefile's header: the targets a user starts with."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from helpers import ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_the_main_targets():
    done = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("  make ")}
    assert {"sft", "dpo", "eval", "chat", "benchmarks", "test", "data", "all", "help"} <= listed
    assert not any(line.startswith("#") for line in done.stdout.splitlines())
