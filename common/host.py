"""The machine a record was made on: host name, platform, CPUs, memory and GPUs."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def hardware() -> dict[str, Any]:
    """Host name, platform, CPUs, memory and GPUs (from nvidia-smi, when there is one)."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
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
