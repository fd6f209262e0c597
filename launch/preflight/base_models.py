"""The base models' small config files, vendored so ``launch check`` resolves recipes offline; and their refresh.

    python -m launch.preflight.base_models             # make check-models: compare with the hub, exit 1 on a difference
    python -m launch.preflight.base_models --write     # replace the vendored files with the hub's

``base_model_configs/<org>/<name>/`` holds a model's config.json, tokenizer_config.json,
special_tokens_map.json and generation_config.json (no weights, no tokenizer.json), and source.json: the
hub repository, the revision the recipes name, and how the files were obtained. Comparing needs the hub
(``HF_HUB_OFFLINE=0``) and, for the gated Llama-3 repositories, ``HF_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from common.files import write_json_atomic

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = Path("base_model_configs")
FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def model_folder(config: dict[str, Any], root: Path = ROOT) -> Path | None:
    """The folder whose config files describe a recipe's base model: a local model, or our vendored copy."""
    base = str(config.get("base_model", ""))
    for folder in (root / base, root / CONFIGS / base):
        if base and (folder / "config.json").is_file():
            return folder
    return None


def stand_in_tokenizer(folder: Path, out: Path) -> Path:
    """A tokenizer folder for ``folder``: its own when it has tokenizer.json, else a stand-in written to ``out``.

    A Llama-3 tokenizer.json is 9 MB, so we do not ship it. The stand-in is a byte-level BPE without merges
    (every byte one token), padded to the first special id, then given the special tokens of the model's
    tokenizer_config.json at their ids; its tokenizer_config.json is the model's own, so bos, eos, pad and
    template are as published. Ordinary text splits differently; the special tokens, which decide the
    end-of-turn labels, are the same tokens at the same ids.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if (folder / "tokenizer.json").is_file():
        return folder
    spec = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    added = sorted((int(i), entry["content"]) for i, entry in spec["added_tokens_decoder"].items())
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: number for number, char in enumerate(alphabet)}
    vocab |= {f"<unused_{n}>": n for n in range(len(alphabet), added[0][0])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(content, special=True, normalized=False) for _, content in added])
    wrong = [(i, c) for i, c in added if backend.token_to_id(c) != i]
    if wrong:
        raise ValueError(f"{folder}: the stand-in tokenizer put {wrong[:3]} at other ids")
    PreTrainedTokenizerFast(tokenizer_object=backend).save_pretrained(out)
    for name in FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
    return out


def vendored(root: Path = ROOT) -> list[tuple[Path, dict[str, Any]]]:
    """Every vendored model folder with its source.json."""
    return [(path.parent, json.loads(path.read_text(encoding="utf-8")))
            for path in sorted((root / CONFIGS).glob("*/*/source.json"))]


def differences(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """Where two JSON values differ, as ``key: ours -> hub`` lines."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [line for key in sorted(set(ours) | set(theirs), key=str)
                for line in differences(ours.get(key, "<absent>"), theirs.get(key, "<absent>"), f"{where}.{key}")]
    return [] if ours == theirs else [f"{where.lstrip('.')}: ours {ours!r} -> hub {theirs!r}"]


def compare(root: Path = ROOT, write: bool = False) -> list[str]:
    """Compare (or, with ``write``, replace) every vendored file with the hub's at the pinned revision."""
    from huggingface_hub import HfApi, hf_hub_download

    found = []
    for folder, source in vendored(root):
        repo, revision = source["repo"], source["revision"]
        commit = HfApi().model_info(repo, revision=revision).sha
        for name in FILES:
            hub = json.loads(Path(hf_hub_download(repo, name, revision=revision)).read_text(encoding="utf-8"))
            ours = json.loads((folder / name).read_text(encoding="utf-8"))
            changes = differences(ours, hub)
            found += [f"{folder.relative_to(root) / name}: {line}" for line in changes]
            if write and changes:
                write_json_atomic(folder / name, hub)
        if write:
            obtained = {"commit": commit, "obtained": "downloaded from the hub"}
            write_json_atomic(folder / "source.json", source | obtained)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launch.preflight.base_models", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the vendored files with the hub's")
    args = parser.parse_args(argv)
    found = compare(write=args.write)
    for line in found:
        print(line)
    verb = "replaced" if args.write else "differ"
    print(f"{len(found)} values {verb}" if found else "every vendored config file matches the hub")
    raise SystemExit(1 if found and not args.write else 0)


if __name__ == "__main__":
    main()
