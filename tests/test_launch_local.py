"""Local multi-process training: `python -m launch sft RECIPE --cpu-procs 2` runs real Axolotl under torchrun (gloo).

Axolotl places the model on accelerator LOCAL_RANK whenever WORLD_SIZE > 1; launch/plugins/cpu.py keeps it
on the CPU, which is what lets two CPU processes train the tiny Llama-3 here.
"""

from __future__ import annotations

import pytest
from helpers import SFT_RECIPE, launch, only_run, tiny_overrides
from safetensors.torch import load_file

from common.rundir import read_manifest
from launch.submit.distributed import Topology, train_command


@pytest.mark.slow
def test_two_cpu_processes_train_the_tiny_model(tiny_llama3, small_data, tmp_path):
    result = launch("sft", SFT_RECIPE, tmp_path, *tiny_overrides(tiny_llama3, small_data["sft"]),
                    "--set", "max_steps=4", "--cpu-procs", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    run_dir = only_run(tmp_path, "sft")
    train_log = (run_dir / "logs/train.log").read_text()
    assert "Cannot access accelerator device" not in train_log
    assert '"world_size": 2' in train_log  # Axolotl's resolved config, read from torchrun's WORLD_SIZE
    lora_b = [w for name, w in load_file(run_dir / "adapter/adapter_model.safetensors").items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # PEFT starts lora_B at zero; training moved it
    assert (run_dir / "merged/config.json").is_file()
    record = read_manifest(run_dir)
    assert record["status"] == "succeeded"
    assert record["attempts"][0]["topology"] == {"nodes": 1, "procs_per_node": 2, "device": "cpu", "world_size": 2}
    assert "launch.plugins.cpu.CPUPlacementPlugin" in record["config"]["plugins"]


@pytest.mark.parametrize(("topology", "expected"), [
    (Topology(1, 1), ["-m", "axolotl.cli.train"]),
    (Topology(1, 2), ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]),
])
def test_local_train_command_uses_torchrun_only_for_several_processes(tmp_path, topology, expected):
    command = train_command(tmp_path / "config.yaml", topology)
    assert command[1:1 + len(expected)] == expected
