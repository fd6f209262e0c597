"""How a training step starts: one process, torchrun on this machine, or srun + torchrun on every SLURM node.

    python -m launch sft RECIPE --cpu-procs 2          # torchrun --standalone --nproc-per-node 2 (gloo)
    python -m launch sft RECIPE --gpus-per-node 8      # torchrun --standalone --nproc-per-node 8 (nccl)
    python -m launch sft RECIPE --slurm CLUSTER.yaml --nodes 2   # in the job: srun, one task per node, each
        torchrun --nnodes 2 --node-rank $SLURM_PROCID, c10d rendezvous on $MASTER_ADDR:$MASTER_PORT

The batch script (launch/submit/templates/sbatch.sh.j2) exports MASTER_ADDR (the first node's NodeAddr, from
``scontrol``) and MASTER_PORT (derived from the job id); the per-node command expands them at run time.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from launch.lifecycle.topology import Topology


def torchrun_args(topo: Topology) -> list[str]:
    """torchrun's options: standalone on one node, c10d rendezvous across SLURM nodes."""
    if topo.nodes == 1:
        return ["--standalone", f"--nproc-per-node={topo.procs_per_node}"]
    return [f"--nnodes={topo.nodes}", f"--nproc-per-node={topo.procs_per_node}", '--node-rank="$SLURM_PROCID"',
            "--rdzv-backend=c10d", '--rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"', '--rdzv-id="$SLURM_JOB_ID"']


def per_node_command(config_path: Path, topo: Topology, python: str = sys.executable) -> str:
    """The shell command each SLURM task runs (its variables expand on that node)."""
    torchrun = [shlex.quote(python), "-m", "torch.distributed.run", *torchrun_args(topo)]
    if topo.world_size == 1:
        torchrun = [shlex.quote(python)]
    return " ".join(["exec", *torchrun, "-m", "axolotl.cli.train", shlex.quote(str(config_path))])


def srun_command(config_path: Path, topo: Topology) -> list[str]:
    """srun with one task per node, each starting torchrun for its node."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")  # srun does not inherit sbatch's --cpus-per-task
    return ["srun", f"--nodes={topo.nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
            *([f"--cpus-per-task={cpus}"] if cpus else []), "bash", "-c", per_node_command(config_path, topo)]


def train_command(config_path: Path, topo: Topology) -> list[str]:
    """The command that runs Axolotl's training for ``topo``."""
    axolotl = ["-m", "axolotl.cli.train", str(config_path)]
    if topo.nodes > 1:
        if not os.environ.get("SLURM_JOB_ID"):
            raise SystemExit(f"--nodes {topo.nodes}: multi-node runs start through SLURM; add --slurm CLUSTER.yaml")
        return srun_command(config_path, topo)
    if topo.world_size == 1:
        return [sys.executable, *axolotl]
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(topo), *axolotl]
