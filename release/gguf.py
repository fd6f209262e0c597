"""A merged model as GGUF files, made by llama.cpp's own converter and quantizer (inference/llama_cpp_tools.py).

    F16                 convert_hf_to_gguf.py --outtype f16; the source of the others
    Q8_0, Q4_K_M, ...   llama_model_quantize from the F16 file (llama.cpp's ``LLAMA_FTYPE_MOSTLY_<NAME>``)

Files are ``<name>-<QUANT>.gguf``. Each is read back with the gguf reader and refused unless it carries the
tokenizer's chat template, eos id and end-of-turn id (``tokenizer.ggml.eot_token_id``: ``<|eot_id|>`` for
Llama-3). Where the converter leaves the end-of-turn id unset, gguf-py's ``gguf_new_metadata.py`` sets it.
The F16 file's vocabulary must be the tokenizer's: a byte-level BPE read as SentencePiece is refused, and
llama.cpp must encode a probe text (chat-template tokens, digits, accents, emoji) as the tokenizer does.
What llama.cpp prints goes to the log given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.capture import captured_output
from common.errors import InputError
from inference.gguf_file import GGUFFile
from inference.gguf_model import import_llama_cpp
from inference.llama_cpp_tools import Tools
from inference.terminators import end_of_turn_tokens, template_text

DEFAULT_QUANTS = ("F16", "Q8_0", "Q4_K_M")
CONVERTED = ("F32", "F16", "BF16")  # written by the converter itself
QUANTIZED = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1",
             "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K")  # quantized from F16 (no importance matrix needed)
QUANTS = (*CONVERTED, *QUANTIZED)
TEMPLATE_KEY, MODEL_KEY = "tokenizer.chat_template", "tokenizer.ggml.model"
PROBE = "Dose: 2.5 mg/kg q8h (max 40 mg), 3333 units; café, naïve 😀 中文\n\n  indented"
EOS_KEY, EOT_KEY = "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"


@dataclass(frozen=True)
class Expected:
    """What every GGUF of a model must carry, from its Hugging Face tokenizer."""

    chat_template: str
    eos_id: int | None
    eot_token: str | None
    eot_id: int | None

    @classmethod
    def of(cls, model_dir: Path, tokenizer: Any) -> Expected:
        if isinstance(tokenizer.chat_template, dict):
            raise InputError(f"{model_dir}: several named chat templates; a GGUF carries one")
        eot = (end_of_turn_tokens(tokenizer) or [None])[0]
        return cls(template_text(tokenizer), tokenizer.eos_token_id, eot,
                   None if eot is None else tokenizer.convert_tokens_to_ids(eot))


def check_quants(names: list[str]) -> list[str]:
    """``names`` upper-cased, in the order given, no repeats; InputError for a name llama.cpp has no type for."""
    chosen = list(dict.fromkeys(name.upper() for name in names))
    if unknown := [name for name in chosen if name not in QUANTS]:
        raise InputError(f"--quant {unknown[0]}: not a GGUF type we export (one of {', '.join(QUANTS)})")
    return chosen


def gguf_name(name: str, quant: str) -> str:
    return f"{name}-{quant}.gguf"


def export(merged: Path, dest: Path, name: str, quants: list[str], tools: Tools, log: Path,
           tokenizer: Any = None) -> list[Path]:
    """Write ``dest/<name>-<QUANT>.gguf`` for each of ``quants``, each checked by reading it back; ``tokenizer``:
    ``merged``'s, when the caller has it loaded."""
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(merged)
    expected = Expected.of(merged, tokenizer)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {quant: dest / gguf_name(name, quant) for quant in quants}
    source = wanted.get("F16") or dest / f".{name}-F16.source.gguf"
    with captured_output(log, title=f"gguf export of {merged}"):
        convert(merged, source, "f16", tools, expected)
        check_vocab(source, merged, tokenizer)
        for quant, path in wanted.items():
            if quant in ("F32", "BF16"):
                convert(merged, path, quant.lower(), tools, expected)
            elif quant != "F16":
                quantize(source, path, quant)
    if "F16" not in wanted:
        source.unlink()
    for path in wanted.values():
        check_file(path, expected)
    return list(wanted.values())


def convert(merged: Path, out: Path, outtype: str, tools: Tools, expected: Expected) -> None:
    """llama.cpp's converter, then the end-of-turn id set where it left it unset."""
    run_tool([sys.executable, str(tools.converter), str(merged), "--outfile", str(out), "--outtype", outtype],
             f"convert_hf_to_gguf.py {merged}")
    if expected.eot_token and GGUFFile.of(out).metadata.get(EOT_KEY) != expected.eot_id:
        fixed = out.with_name(out.name + ".eot")
        script = tools.gguf_py / "gguf" / "scripts" / "gguf_new_metadata.py"
        run_tool([sys.executable, str(script), "--force", "--special-token", "eot", expected.eot_token,
                  str(out), str(fixed)], f"gguf_new_metadata.py {out.name}")
        os.replace(fixed, out)


def check_vocab(path: Path, model_dir: Path, tokenizer: Any) -> None:
    """InputError unless the GGUF's vocabulary is the model's (``tokenizer``, of ``model_dir``): its kind, then a probe
    encoded by both."""
    import json

    spec = model_dir / "tokenizer.json"
    backend = json.loads(spec.read_text(encoding="utf-8")) if spec.is_file() else {}
    byte_level = "ByteLevel" in json.dumps([backend.get("pre_tokenizer"), backend.get("decoder")])
    kind = GGUFFile.of(path).metadata.get(MODEL_KEY)
    if byte_level and kind != "gpt2":
        fallback = (backend.get("model") or {}).get("byte_fallback")
        raise InputError(f"{spec}: a byte-level BPE, but llama.cpp's converter read it as {kind!r} (SentencePiece)"
                         + ("; its byte_fallback is true, as transformers' GGUF loader leaves it: a model trained "
                            "from an older `make model` default; train again from the current one" if fallback
                            else ""))
    llama_cpp = import_llama_cpp()
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        ours = vocab.tokenize(PROBE.encode("utf-8"), add_bos=False, special=True)
    finally:
        vocab.close()
    theirs = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    if ours != theirs:
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                     min(len(ours), len(theirs)))
        raise InputError(f"{path.name}: llama.cpp encodes a probe text unlike {model_dir}'s tokenizer (from token "
                         f"{first}: {ours[first:first + 3]} vs {theirs[first:first + 3]}); its pre-tokenizer "
                         f"{GGUFFile.of(path).metadata.get('tokenizer.ggml.pre')!r} is not this tokenizer's")


def run_tool(command: list[str], what: str) -> None:
    """A llama.cpp script, its output in the log; InputError with its last line when it fails."""
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    sys.stdout.write(done.stdout)
    if done.returncode:
        lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        raise InputError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}")


def quantize(source: Path, out: Path, quant: str) -> None:
    """llama.cpp's quantizer, through the binding, from the F16 file."""
    import ctypes

    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0:
        raise InputError(f"llama_model_quantize {source.name} -> {quant} failed (status {status})")


def check_file(path: Path, expected: Expected) -> dict[str, Any]:
    """Read ``path`` back: InputError unless it carries ``expected``'s template, eos and end-of-turn ids."""
    meta = GGUFFile.of(path).metadata
    problems = []
    if meta.get(TEMPLATE_KEY) != expected.chat_template:
        problems.append("its chat template differs from the tokenizer's" if meta.get(TEMPLATE_KEY)
                        else "no chat template")
    if meta.get(EOS_KEY) != expected.eos_id:
        problems.append(f"eos id {meta.get(EOS_KEY)}, the tokenizer's is {expected.eos_id}")
    if expected.eot_id is not None and meta.get(EOT_KEY) != expected.eot_id:
        problems.append(f"end-of-turn id {meta.get(EOT_KEY)}, {expected.eot_token} is {expected.eot_id}")
    if problems:
        raise InputError(f"{path}: {'; '.join(problems)}")
    return meta


def record(path: Path, quant: str) -> dict[str, Any]:
    """What release.json and the card say of one GGUF file."""
    gguf = GGUFFile.of(path)
    meta = gguf.metadata
    return {"file": path.name, "quant": quant, "size": path.stat().st_size, "sha256": gguf.sha256,
            "eos_id": meta.get(EOS_KEY), "eot_id": meta.get(EOT_KEY),
            "chat_template": bool(meta.get(TEMPLATE_KEY)), "tensor_types": meta["tensor_types"]}
