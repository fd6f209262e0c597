"""Turn published dataset schemas into the rows Axolotl reads.

    python -m data_prep convert SOURCE INPUT... --out OUT.jsonl [--system TEXT | --no-system]
    python -m data_prep decontaminate INPUT.jsonl --benchmarks DIR --out CLEAN.jsonl
    python -m data_prep build MIXTURE.yaml --out DIR [--tokenizer MODEL_DIR] [--workers N]

INPUT is a .jsonl, .json (either may end in .xz or .gz) or .parquet file, or hub:ORG/NAME@REVISION[:[CONFIG/]SPLIT];
a source with its own reader takes its own format (medquad: the XML archive, a folder or a file).
Bad input ends with one line naming the file, line or key (exit 2); a failure of the world (a full disk, no
network) one line, exit 1; --debug shows the traceback.
Every command takes --quiet (no progress) and --verbose (third-party import noise too, common/quiet.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import progress
from common.errors import cli_main, fraction
from data_prep import decontaminate
from data_prep.convert import DEFAULT_MAX_REJECT_RATE, convert
from data_prep.coverage import describe
from data_prep.parallel import default_workers
from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT
from data_prep.sources import load_sources


def run_convert(args: argparse.Namespace) -> None:
    manifest = convert(load_sources()[args.source], args.inputs, args.out, args.system, args.max_reject_rate)
    out, rejects = manifest["output"], manifest["rejects"]
    print(f"{args.source}: {out['rows']} rows -> {out['path']}; {rejects['rows']} rejected -> {rejects['path']}")
    for reason, count in rejects["by_reason"].items():
        print(f"  {count:>6}  {reason}")


def build_header(mixture_path: Path, mixture: dict, out: Path) -> list[str]:
    """The mixture, its sources per kind (input files), the output folder."""
    lines = [f"data build of {mixture_path} ({mixture.get('name')} v{mixture.get('version')}) -> {out}/"]
    for kind in ("sft", "dpo"):
        entries = mixture.get(kind) or []
        names = list(dict.fromkeys(entry["source"] for entry in entries))
        files = sum(len(entry["inputs"]) for entry in entries)
        if entries:
            lines.append(f"  {kind}: {files} input files from {', '.join(names)}")
    return lines


def decontaminated_line(manifest: dict) -> str | None:
    """One line: the rows each benchmark removed, all kinds together ("-" for a benchmark not checked)."""
    counts = [record["decontaminated"] for record in manifest["kinds"].values() if "decontaminated" in record]
    if not counts:
        return None
    removed = {task: None if counts[0][task] is None else sum(c[task] for c in counts) for task in counts[0]}
    return "decontaminated, rows removed per benchmark: " + ", ".join(
        f"{task} {'-' if n is None else n}" for task, n in removed.items())


def run_build(args: argparse.Namespace) -> None:
    from data_prep.build import build, load_mixture  # dedup's MinHash and the tokenizer: not for --help

    start = time.monotonic()
    print("\n".join(build_header(args.mixture, load_mixture(args.mixture), args.out)), flush=True)
    manifest = build(args.mixture, args.out, args.tokenizer, args.workers)
    for kind, record in manifest["kinds"].items():
        print(f"{kind}: " + ", ".join(f"{name} {o['rows']}" for name, o in record["outputs"].items()))
        tokens = record.get("tokens", {})
        if tokens.get("over_sequence_len"):
            print(f"  {tokens['over_sequence_len']} rows are longer than sequence_len {tokens['sequence_len']} "
                  "tokens: left out, see rejects.jsonl")
    if "benchmarks" in manifest:
        print(describe(manifest["benchmarks"]))
        print(decontaminated_line(manifest))
    rejects = manifest["rejects"]
    print(f"left out: {rejects['rows']} rows {rejects['by_stage']} -> {args.out / 'rejects.jsonl'}")
    print(f"data build done in {progress.clock(time.monotonic() - start)}: {args.out / 'manifest.json'}; "
          "next: make sft")


def main(argv: list[str] | None = None) -> None:
    cli_main(run, argv)


def run(argv: list[str]) -> None:
    sources = load_sources()
    listing = "\n".join(f"  {name:<14} {m.KIND}  {m.SUMMARY}" for name, m in sources.items())
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    conv = commands.add_parser("convert", help="convert source files with one converter",
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               description=f"Convert source files into Axolotl rows.\n\nsources:\n{listing}")
    conv.add_argument("source", choices=sources, metavar="SOURCE", help="one of: " + ", ".join(sources))
    conv.add_argument("inputs", nargs="+", metavar="INPUT")
    conv.add_argument("--out", type=Path, required=True, help="OUT.jsonl; rejects and manifest go beside it")
    system = conv.add_mutually_exclusive_group()
    system.add_argument("--system", default=OPENBIOLLM_SYSTEM_PROMPT,
                        help="system prompt added to rows without one (default: OpenBioLLM's, from its card)")
    system.add_argument("--no-system", dest="system", action="store_const", const=None,
                        help="add no system prompt")
    conv.add_argument("--max-reject-rate", type=fraction, default=DEFAULT_MAX_REJECT_RATE,
                      help=f"fail when an input loses more than this share of rows (default {DEFAULT_MAX_REJECT_RATE})")
    conv.set_defaults(run=run_convert)

    decon = commands.add_parser("decontaminate", help="drop rows that overlap the evaluation benchmarks",
                                description=decontaminate.__doc__.splitlines()[0])
    decontaminate.add_arguments(decon)
    decon.set_defaults(run=decontaminate.run)

    mix = commands.add_parser("build", help="build a mixture: convert, cap, dedup, decontaminate, split")
    mix.add_argument("mixture", type=Path, metavar="MIXTURE.yaml", help="e.g. data_prep/mixtures/default-v1.yaml")
    mix.add_argument("--out", type=Path, required=True, metavar="DIR")
    mix.add_argument("--tokenizer", type=Path,
                     help="model folder whose tokenizer measures row lengths (default: the mixture's)")
    mix.add_argument("--workers", type=int, default=default_workers(),
                     help="processes for dedup, decontamination and token lengths (default: this machine's "
                          f"cores, {default_workers()}); the output is the same for any count")
    mix.set_defaults(run=run_build)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
