"""Where a stage's training runs: nodes x processes per node, on GPUs or CPUs (recorded with every attempt).

    python -m launch sft RECIPE --cpu-procs 2 | --gpus-per-node 8 [--nodes 2 --slurm CLUSTER.yaml]

The commands that start those processes (torchrun, srun) are launch/submit/distributed.py's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    """Nodes and processes per node; ``device`` is "gpu" (one process per GPU) or "cpu"."""

    nodes: int = 1
    procs_per_node: int = 1
    device: str = "cpu"

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    def as_record(self) -> dict[str, int | str]:
        return {"nodes": self.nodes, "procs_per_node": self.procs_per_node, "device": self.device,
                "world_size": self.world_size}


def topology(nodes: int, gpus_per_node: int | None, cpu_procs: int | None) -> Topology:
    """The topology the command line asks for; GPUs and CPU processes exclude each other."""
    if gpus_per_node and cpu_procs:
        raise SystemExit("--gpus-per-node and --cpu-procs exclude each other: GPUs run one process each")
    if nodes < 1 or any(n is not None and n < 1 for n in (gpus_per_node, cpu_procs)):
        raise SystemExit("--nodes, --gpus-per-node and --cpu-procs take positive numbers")
    if gpus_per_node:
        return Topology(nodes, gpus_per_node, "gpu")
    return Topology(nodes, cpu_procs or 1, "cpu")
