"""The one-command GPU check: its CPU run end to end, its step limits and records, its wheel set, and Python 3.12.

The GPU run itself cannot happen here; ``gpu_check.py --cpu`` runs every step on tiny shapes, and does so while
bench/gpu_wheels.py's simulation hides every package that neither the GPU machine nor the wheels would provide.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile

import pytest
from helpers import ROOT

from bench import gpu_check, gpu_throughput, gpu_wheels


def test_the_newest_recipe_version_is_picked():
    versions = sorted(int(p.name[1:]) for p in (ROOT / "recipes/openbiollm-8b").glob("v*") if p.name[1:].isdigit())
    newest = ROOT / f"recipes/openbiollm-8b/v{versions[-1]}/sft.yaml"
    assert gpu_throughput.latest_recipe("openbiollm-8b", "sft") == newest
    with pytest.raises(SystemExit, match=r"no v<N>/nope\.yaml"):
        gpu_throughput.latest_recipe("openbiollm-8b", "nope")


def test_without_flash_attn_the_packed_benchmark_runs_sdpa_and_still_packs(tmp_path):
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    config = validate_config(DictDefault(gpu_throughput.bench_config("v2_packed", tmp_path, 10, False,
                                                                  attention="sdpa")))
    assert config.attn_implementation == "sdpa" and config.sample_packing is True and config.lora_r == 128


def test_a_step_past_its_limit_is_stopped_with_its_subprocesses_and_recorded(tmp_path):
    check = gpu_check.Check(tmp_path, cpu=True, budget=60)
    marker = tmp_path / "still-running"

    def slow(check, entry):
        script = f"import time, pathlib; time.sleep(4); pathlib.Path({str(marker)!r}).touch()"
        check.run([sys.executable, "-c", script], tmp_path / "slow.log")

    started = time.monotonic()
    check.step("sft", 1, slow)
    assert time.monotonic() - started < 4
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"]["sft"]["status"] == "timed out" and results["steps"]["sft"]["limit_s"] == 1
    assert "| sft | timed out |" in (tmp_path / "results.md").read_text()
    time.sleep(5)
    assert not marker.exists(), "the step's subprocess outlived its limit"


def test_each_step_is_written_as_it_ends_and_a_failed_check_fails_the_step(tmp_path):
    check = gpu_check.Check(tmp_path, cpu=True, budget=60)
    check.step("environment", 10, lambda c, e: e.update(checks={"a": True}, figures={"x": 1.23456}))
    assert json.loads((tmp_path / "results.json").read_text())["steps"]["environment"]["status"] == "passed"
    check.step("sft", 10, lambda c, e: e.update(checks={"adapter_moved": False}))
    check.step("dpo", 10, lambda c, e: 1 / 0)
    steps = json.loads((tmp_path / "results.json").read_text())["steps"]
    assert steps["sft"]["status"] == "failed" and steps["dpo"]["status"] == "failed"
    assert steps["dpo"]["error"] == "ZeroDivisionError: division by zero"
    table = (tmp_path / "results.md").read_text()
    assert "| environment | passed |" in table and "x 1.235" in table and "| adapter_moved |" in table


def test_a_step_that_does_not_fit_the_budget_left_is_skipped(tmp_path):
    check = gpu_check.Check(tmp_path, cpu=True, budget=5)
    check.step("zero3", 90, lambda c, e: pytest.fail("must not start"))
    entry = json.loads((tmp_path / "results.json").read_text())["steps"]["zero3"]
    assert entry["status"] == "skipped" and "of the budget left" in entry["reason"]


def test_every_wheel_is_pinned_and_none_is_already_on_the_gpu_machine_unless_pinned_apart():
    pins = gpu_wheels.pins()
    assert all(gpu_wheels.normal(name) in pins for name in gpu_wheels.WHEELS)
    on_target = [n for n in gpu_wheels.WHEELS if gpu_wheels.normal(n) in gpu_wheels.TARGET]
    assert on_target == ["peft", "transformers", "accelerate", "huggingface-hub"]  # Axolotl pins other versions


def test_bitsandbytes_is_repacked_with_the_cuda13_and_cpu_libraries_and_a_matching_record(tmp_path):
    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    files = {"bitsandbytes/__init__.py": b"x = 1\n", "bitsandbytes/libbitsandbytes_cuda118.so": b"old" * 100,
             "bitsandbytes/libbitsandbytes_cuda130.so": b"cuda13", "bitsandbytes/libbitsandbytes_cpu.so": b"cpu",
             "bitsandbytes/libbitsandbytes_rocm64.so": b"rocm", "bitsandbytes-0.50.2.dist-info/RECORD": b"stale"}
    with zipfile.ZipFile(wheel, "w") as handle:
        for name, data in files.items():
            handle.writestr(name, data)
    gpu_wheels.trim_bitsandbytes(wheel)
    with zipfile.ZipFile(wheel) as handle:
        names = set(handle.namelist())
        record = handle.read("bitsandbytes-0.50.2.dist-info/RECORD").decode().splitlines()
        contents = {n: handle.read(n) for n in names}
    assert names == {"bitsandbytes/__init__.py", "bitsandbytes/libbitsandbytes_cuda130.so",
                     "bitsandbytes/libbitsandbytes_cpu.so", "bitsandbytes-0.50.2.dist-info/RECORD"}
    for line in record:
        name, digest, size = line.rsplit(",", 2)
        if name.endswith("RECORD"):
            continue
        expected = base64.urlsafe_b64encode(hashlib.sha256(contents[name]).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}" and int(size) == len(contents[name])
    assert len(record) == 4


# Pinned pure-Python packages published only as sdists: pip resolves for another Python from wheels alone, so the
# test builds these (pip wheel, from the registry) first.
SDIST_ONLY = ("langdetect", "axolotl-contribs-lgpl", "axolotl-contribs-mit", "rouge-score", "sqlitedict", "word2number")
REGISTRY_DOWN = re.compile(r"Failed to establish a new connection|Temporary failure in name resolution|"
                           r"Network is unreachable|Max retries exceeded|Connection refused")


def pip(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """pip from this environment; skips the test when the package registry cannot be reached."""
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    unreachable = REGISTRY_DOWN.search(done.stderr)
    if done.returncode != 0 and unreachable:
        pytest.skip(f"the package registry is unreachable: {unreachable.group(0)}")
    return done


@pytest.mark.slow
def test_the_pinned_set_resolves_for_python_3_12_on_linux(tmp_path):
    """pyproject.toml's pins under constraints.txt resolve for CPython 3.12 on manylinux x86_64 (the GPU machine's
    Python; there torch==2.13.0 is PyPI's CUDA build), every pin kept. A dry run: nothing is installed."""
    import tomllib

    pins = gpu_wheels.pins()
    built = pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "sdists"),
                *[f"{name}=={pins[name]}" for name in SDIST_ONLY])
    assert built.returncode == 0, built.stderr[-2000:]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    platforms = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]
    done = pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(tmp_path / "report.json"),
               "--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
               *[x for p in platforms for x in ("--platform", p)], "--find-links", str(tmp_path / "sdists"),
               "-c", str(ROOT / "constraints.txt"),
               *project["dependencies"], *project["optional-dependencies"]["dev"])
    assert done.returncode == 0, done.stderr[-3000:]
    resolved = {gpu_wheels.normal(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert {name: resolved[name] for name in pins if name in resolved} == \
        {name: version for name, version in pins.items() if name in resolved}
    assert resolved["axolotl"] == "0.19.0" and resolved["torch"] == "2.13.0" and len(resolved) > 200


@pytest.mark.slow
def test_gpu_check_cpu_runs_every_step_with_only_the_gpu_machines_packages_and_the_wheels(tmp_path):
    simulation = gpu_wheels.write_simulation(tmp_path / "simulation")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(simulation)])}
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--cpu", "--out", str(tmp_path / "out")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)
    results = json.loads((tmp_path / "out/results.json").read_text())
    logs = "".join(p.read_text()[-2000:] for p in (tmp_path / "out/work").glob("*.log"))
    assert done.returncode == 0, done.stdout[-3000:] + logs
    statuses = {name: entry["status"] for name, entry in results["steps"].items()}
    assert statuses == {"environment": "passed", "sft": "passed", "dpo": "passed", "eval": "passed",
                        "throughput": "passed", "zero3": "skipped"}
    steps = results["steps"]
    assert steps["sft"]["checks"]["sft_adapter_moved"] and steps["dpo"]["checks"]["dpo_parent_is_sft_run"]
    assert steps["dpo"]["checks"]["reward_margin_logged"] and steps["dpo"]["figures"]["last_margin"] is not None
    assert steps["sft"]["recipe"] == str(gpu_throughput.latest_recipe("openbiollm-8b", "sft").relative_to(ROOT))
    assert all(steps["sft"]["checks"][f"sft_{layer}_token_rows_moved"] for layer in ("embed_tokens", "lm_head"))
    throughput = steps["throughput"]
    assert steps["eval"]["figures"]["items"] > 0 and throughput["figures"]["v2_tokens_per_s_per_gpu"] > 0
    assert throughput["figures"]["v3_over_v2"] > 0 and throughput["checks"]["packed_rows_kept_apart"]
    assert throughput["checks"]["packed_row_loss_equals_alone"]
    assert {"bf16", "optimizer", "plugins"} <= set(results["substitutions"])
    assert "| dpo | passed |" in (tmp_path / "out/results.md").read_text()
