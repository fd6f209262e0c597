"""The machine a record was made on: host name, platform, CPU (model and vector extensions), memory and GPUs."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

# The vector extensions that decide a CPU kernel's rounding (torch's and llama.cpp's): recorded with the CPU, so that
# two runs' figures can be told apart by the instructions that computed them.
VECTOR_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_tile",
                "asimd", "sve")


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The CPU's model name, family and model numbers, and its vector extensions (Linux's /proc/cpuinfo)."""
    fields: dict[str, str] = {}
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    return {"model_name": fields.get("model name") or platform.processor() or None,
            "family": fields.get("cpu family"), "model": fields.get("model"),
            "vector_extensions": [flag for flag in VECTOR_FLAGS if flag in flags]}


def hardware() -> dict[str, Any]:
    """Host name, platform, CPUs, memory and GPUs (from nvidia-smi, when there is one)."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu(),
    }
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        info["memory_gib"] = round(total_kb / 2**20, 1)
    info["gpus"] = []
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, check=False).stdout
        info["gpus"] = [line.strip() for line in out.splitlines() if line.strip()]
    return info
