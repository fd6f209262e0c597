"""What to load, and loading it: the one resolver of ``eval run``, ``eval generate-check``, ``release chat|generate``
and ``release build``. Its rules, in order:

    (none named)         the latest usable run: the latest succeeded dpo run, else the latest succeeded sft run
    X.gguf               a GGUF file, run by llama.cpp (inference/gguf_model.py)
    runs/<id>            a run (manifest.json), refused unless it succeeded: merged/ when there, else adapter/ on
                         the base its manifest names
    runs/<id>/adapter    (any LoRA adapter folder) on the base in its adapter_config.json
    models/<name>        a plain model folder (config.json)

Local files only, and never ``trust_remote_code``. Anything else is refused in one line before torch loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from common import quiet
from common.errors import InputError
from common.rundir import MANIFEST, latest_succeeded, read_manifest
from inference.gguf_file import GGUFFile, is_gguf

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class Source:
    """What to load: the model (or the adapter's base), the adapter, and where the tokenizer is."""

    model: Path
    tokenizer: Path
    adapter: Path | None = None
    run: Path | None = None  # the run folder it came from

    def describe(self) -> str:
        return f"{self.adapter} on {self.model}" if self.adapter else str(self.model)


def latest_usable_run(runs_dir: Path = Path("runs")) -> Path:
    """The latest succeeded dpo run, else sft (``make chat``, ``make eval``, ``make release`` without RUN)."""
    for stage in ("dpo", "sft"):
        if run := latest_succeeded(runs_dir, stage):
            return run
    raise InputError(f"no successful dpo or sft run in {runs_dir}/: run `make sft` first, or name a model")


def succeeded_manifest(run: Path) -> dict[str, Any]:
    """``run``'s manifest; InputError unless the run succeeded (a failed, stopped or running run is never used)."""
    manifest = read_manifest(run)
    if manifest.get("status") != "succeeded":
        raise InputError(f"{run}: run status is {manifest.get('status')!r}; only a succeeded run is used")
    return manifest


def find_source(spec: str | Path | None, runs_dir: Path = Path("runs")) -> Source:
    """What ``spec`` (a GGUF, a run, an adapter or a model folder; None: the latest usable run in ``runs_dir``)
    names, by the module's rules; InputError when it names none."""
    path = Path(spec) if spec is not None else latest_usable_run(runs_dir)
    if is_gguf(path):
        GGUFFile.of(path)
        return Source(model=path, tokenizer=path)
    if (path / MANIFEST).is_file():
        return run_source(path)
    if (path / ADAPTER_CONFIG).is_file():
        return adapter_source(path, adapter_base(path))
    if (path / "config.json").is_file():
        return Source(model=path, tokenizer=path)
    what = "no such folder" if not path.exists() else "neither a run (manifest.json) nor a model (config.json)"
    raise InputError(f"{path}: {what}; give runs/<id>, an adapter folder, a model folder or a .gguf file")


def run_source(run: Path) -> Source:
    """A succeeded run's merged/ model, else its adapter/ on its base."""
    succeeded_manifest(run)
    if (run / "merged" / "config.json").is_file():
        return Source(model=run / "merged", tokenizer=run / "merged", run=run)
    if (run / "adapter" / ADAPTER_CONFIG).is_file():
        return replace(adapter_source(run / "adapter", run_base(run)), run=run)
    raise InputError(f"{run}: the run has neither merged/ nor adapter/: nothing to load")


def run_base(run: Path) -> Path:
    """The base model a run trained, from its manifest (as the launcher recorded it, relative to where it ran)."""
    base = (read_manifest(run).get("base_model") or {}).get("id")
    if not base:
        return adapter_base(run / "adapter")
    return local_base(base, run, f"{run / MANIFEST}: base_model")


def adapter_base(adapter: Path) -> Path:
    """The base model an adapter folder names in its adapter_config.json."""
    config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise InputError(f"{adapter / ADAPTER_CONFIG}: no base_model_name_or_path")
    return local_base(base, adapter.parent, f"{adapter / ADAPTER_CONFIG}: base_model_name_or_path")


def local_base(base: str, run: Path, where: str) -> Path:
    """``base`` as a folder here: as written, else under the run's project (``runs/<id>`` -> ``.``)."""
    for candidate in (Path(base), run.resolve().parent.parent / base):
        if (candidate / "config.json").is_file():
            return candidate
    raise InputError(f"{where} {base!r} is not a model folder here (hub models are not fetched)")


def adapter_source(adapter: Path, base: Path) -> Source:
    """The adapter on ``base``; the adapter's own tokenizer when it saved one (it may have added tokens)."""
    has_tokenizer = any((adapter / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    return Source(model=base, tokenizer=adapter if has_tokenizer else base, adapter=adapter)


def check_safetensors(path: Path) -> None:
    """InputError naming ``path`` unless it is a whole safetensors file: its header is JSON and its tensors' data
    ends where the file ends (a truncated copy, an interrupted save, another format)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= length <= size - 8:
            raise InputError(f"{path}: not a whole safetensors file ({size} bytes; truncated?)")
        try:
            header = json.loads(handle.read(length))
            end = max([0, *(t["data_offsets"][1] for k, t in header.items() if k != "__metadata__")])
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise InputError(f"{path}: not a safetensors file (its header is not safetensors' JSON)") from None
    if 8 + length + end != size:
        raise InputError(f"{path}: truncated or damaged: {size} bytes where its header says {8 + length + end}")


def check_weights(source: Source) -> None:
    """Every safetensors file of the model and the adapter whole, before torch loads any (one line naming it)."""
    for folder in filter(None, (source.model, source.adapter)):
        for path in sorted(folder.glob("*.safetensors")):
            check_safetensors(path)


def load_model(source: Source) -> tuple[Any, Any]:
    """(model in eval mode on the GPU when there is one, tokenizer); a GGUF file: llama.cpp's model and vocabulary."""
    if is_gguf(source.model):
        from inference.gguf_model import load_gguf

        return load_gguf(source.model)
    check_weights(source)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    if not quiet.VERBOSE:
        logging.disable_progress_bar()  # the per-tensor "Loading weights" bar
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(source.tokenizer)
    model = AutoModelForCausalLM.from_pretrained(source.model, dtype=dtype)
    if source.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source.adapter)
    return model.to(device).eval(), tokenizer
