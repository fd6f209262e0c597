"""The wheels bench/gpu_check.py needs on the GPU machine, downloaded here into .whl/ (make gpu-wheels).

    .venv/bin/python bench/gpu_wheels.py [--dest .whl] [--budget-mib 64]

The GPU machine (docs/gpu-check.md) has Python 3.12, torch 2.11 (CUDA 13), transformers, peft, accelerate and
the other packages in TARGET, and no network. What the check imports beyond those travels as cp312 manylinux
x86_64 wheels, at the versions constraints.txt pins, in one folder beside the working tree: both together at
most 64 MiB. Each wheel is fetched with ``pip download --no-deps --only-binary=:all:``. bitsandbytes' wheel
(43 MB) carries a native library for every CUDA and ROCm release; it is repacked with only the CUDA 13.0 one
(torch 2.11 there is built for CUDA 13.0) and the CPU one, its RECORD rewritten to match. deepspeed is built
here from its sdist with no ops compiled (DS_BUILD_OPS=0): it compiles what it uses just in time there.

``--simulate DIR`` checks the list here: it writes a sitecustomize.py that hides every installed package that
neither TARGET nor the wheels provide; tests/test_gpu_check.py runs ``gpu_check.py --cpu`` under it.

Prints each wheel with its size, the working tree's size (tracked + untracked-not-ignored files, as the device
tool counts it) and the total; exits 1 above the budget.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
# What the check imports (an import trace of `gpu_check.py --cpu`, docs/gpu-check.md) that TARGET lacks, or has in
# a version Axolotl 0.19.0 pins differently. Imports that are only probed (accelerate's is_wandb_available,
# transformers' optional backends) are left out: without the package, the library skips them.
WHEELS = [
    "axolotl", "axolotl-contribs-lgpl",  # the trainer; axolotl/train.py imports axolotl.contribs.lgpl
    "trl",  # DPO
    "bitsandbytes",  # NF4 and 8-bit AdamW (repacked: CUDA 13 + CPU libraries only)
    "datasets", "dill", "multiprocess",  # Axolotl's data loading
    "pydantic", "pydantic_core", "annotated-types", "typing-inspection",  # Axolotl's config schema
    "addict", "fire", "termcolor", "fastcore", "posthog", "backoff", "distro",  # imported by axolotl.cli
    "evaluate", "wandb", "platformdirs", "opentelemetry-api",  # imported by axolotl.utils.callbacks (wandb always)
    "lm_eval",  # python -m eval
    "peft", "transformers", "accelerate", "huggingface-hub",  # there too, in versions other than Axolotl's pins
    "liger-kernel",  # the v3 recipes' Liger plugin (Triton kernels; the machine has Triton)
    "deepspeed", "hjson",  # the 70B recipe's ZeRO-3 (zero3 step); deepspeed imports hjson
]
# Published as an sdist only (axolotl-contribs-lgpl), or whose wheel we build ourselves (deepspeed: its ops are
# compiled just in time on first use, with the machine's nvcc and ninja; DS_BUILD_OPS=0 builds none here).
SDIST_ONLY = {"axolotl-contribs-lgpl", "deepspeed"}
BUILD_ENV = {"deepspeed": {"DS_BUILD_OPS": "0"}}
# The GPU machine's Python packages (the device image 'cuda', as read on 2026-11-17); versions differ from ours.
TARGET = set("""absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash
yarl zipp""".split())
# Needed here only by our older versions of packages the GPU machine has (pandas 2 imports pytz; its newer pandas
# does not): the simulation leaves them visible.
LOCAL_ONLY = {"pytz", "tzdata", "pyparsing"}
KEEP_LIBS = ("libbitsandbytes_cuda130.so", "libbitsandbytes_cpu.so")  # torch 2.11 there is CUDA 13.0


def normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pins() -> dict[str, str]:
    """constraints.txt as {normalised name: version}."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            found[normal(name)] = version.strip()
    return found


def download(requirements: list[str], dest: Path, python: str = "3.12") -> None:
    """``pip download`` the exact wheels for CPython ``python`` on manylinux x86_64, no dependencies."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "--dest", str(dest)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + requirements, check=True)


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def trim_bitsandbytes(wheel: Path) -> None:
    """Rewrite the wheel without the native libraries the GPU machine cannot load; RECORD follows."""
    drop = lambda n: n.startswith("bitsandbytes/libbitsandbytes_") and n.split("/")[-1] not in KEEP_LIBS  # noqa: E731
    with zipfile.ZipFile(wheel) as source:
        if not any(drop(n) for n in source.namelist()):
            return
        members = {i.filename: (i, source.read(i)) for i in source.infolist() if not drop(i.filename)}
    record = next(n for n in members if n.endswith(".dist-info/RECORD"))
    lines = [record_line(n, d) for n, (_, d) in members.items() if n != record] + [f"{record},,"]
    info, _ = members[record]
    members[record] = (info, ("\n".join(lines) + "\n").encode())
    temporary = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in members.values():
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    temporary.replace(wheel)


def tree_bytes() -> int:
    """Tracked and untracked-not-ignored files of the working tree: what travels to the GPU machine."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file())


def hidden_modules(wheels: list[str] = WHEELS) -> list[str]:
    """Top-level modules of the packages installed here that neither the GPU machine nor ``wheels`` provide."""
    import importlib.metadata

    allowed = {normal(n) for n in TARGET | set(wheels)}
    ours = {"common", "launch", "eval", "data_prep", "bench", "tests"} | LOCAL_ONLY
    return sorted(module for module, dists in importlib.metadata.packages_distributions().items()
                  if module not in ours and not module.startswith("__editable__")
                  and not any(normal(d) in allowed for d in dists))


def write_simulation(folder: Path, wheels: list[str] = WHEELS) -> Path:
    """A sitecustomize.py that hides every module ``hidden_modules`` names: with the folder on PYTHONPATH, this
    environment imports only what the GPU machine plus ``wheels`` would have (names, not versions)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        '"""Written by bench/gpu_wheels.py: hides packages the GPU machine and .whl/ do not have."""\n'
        "import sys\nfrom importlib.machinery import PathFinder\n\n"
        f"HIDDEN = {set(hidden_modules(wheels))!r}\n\n\n"
        "class HidingPathFinder(PathFinder):\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in HIDDEN:\n"
        "            return None\n"
        "        return PathFinder.find_spec(name, path, target)\n\n\n"
        "sys.meta_path[:] = [HidingPathFinder if f is PathFinder else f for f in sys.meta_path]\n",
        encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--budget-mib", type=float, default=64.0, help="tree + wheels limit (the device tool's)")
    parser.add_argument("--simulate", type=Path, metavar="DIR", help="download nothing: write DIR/sitecustomize.py, "
                        "which hides what the GPU machine and the wheels lack (PYTHONPATH=DIR python ...)")
    args = parser.parse_args(argv)
    if args.simulate:
        print(f"{write_simulation(args.simulate) / 'sitecustomize.py'}: hides {len(hidden_modules())} modules")
        return 0
    pinned = pins()
    missing = [n for n in WHEELS if normal(n) not in pinned]
    if missing:
        raise SystemExit(f"constraints.txt: no pin for {', '.join(missing)}")
    args.dest.mkdir(parents=True, exist_ok=True)
    wanted = {normal(n): pinned[normal(n)] for n in WHEELS}
    for old in args.dest.glob("*.whl"):  # one version of each, and nothing else: pip installs the folder's *.whl
        name, version = old.name.split("-")[:2]
        if wanted.get(normal(name)) != version:
            old.unlink()
    download([f"{n}=={v}" for n, v in wanted.items() if n not in SDIST_ONLY], args.dest)
    for name in sorted(SDIST_ONLY):
        if any(normal(w.name.split("-")[0]) == name for w in args.dest.glob("*.whl")):
            continue  # built before at the pinned version (other versions were removed above)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-binary", name,
                        "--no-build-isolation", "--wheel-dir", str(args.dest), f"{name}=={wanted[name]}"],
                       check=True, env={**os.environ, **BUILD_ENV.get(name, {})})
    for wheel in args.dest.glob("bitsandbytes-*.whl"):
        trim_bitsandbytes(wheel)
    wheels = sorted(args.dest.glob("*.whl"))
    tree = tree_bytes()
    total = tree + sum(w.stat().st_size for w in wheels)
    for wheel in wheels:
        print(f"{wheel.stat().st_size / MIB:8.2f} MiB  {wheel.name}")
    print(f"{sum(w.stat().st_size for w in wheels) / MIB:8.2f} MiB  {len(wheels)} wheels in {args.dest}")
    print(f"{tree / MIB:8.2f} MiB  working tree (tracked + untracked-not-ignored files)")
    print(f"{total / MIB:8.2f} MiB  together, budget {args.budget_mib:g} MiB")
    if total > args.budget_mib * MIB:
        print(f"over the budget by {(total - args.budget_mib * MIB) / MIB:.2f} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
