"""Start a stage: `python -m launch STAGE RECIPE ...` (see launch/__main__.py for the other commands).

    python -m launch sft recipes/smollm2-135m/v1/sft.yaml
    python -m launch dpo recipes/smollm2-135m/v1/dpo.yaml [--parent runs/<sft-run-id>]
    python -m launch sft RECIPE --set num_epochs=2 --set datasets.0.path=data/build/sft.jsonl

Each run lands in ``runs/<run-id>/`` with its config, adapter, merged model, logs and manifest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from launch.stage import STAGE_STEPS, StageRun, run_stage


def parse_override(text: str) -> tuple[str, object]:
    """``key.path=value`` with the value read as YAML (``2`` is an int, ``[a, b]`` a list)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launch", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(STAGE_STEPS), help="which stage to run")
    parser.add_argument("recipe", type=Path, help="an Axolotl recipe, e.g. recipes/smollm2-135m/v1/sft.yaml")
    parser.add_argument("--run-id", help="name of the run folder (default: <time>-<stage>-<recipe>)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    parser.add_argument("--parent", type=Path, help="the run this one starts from (dpo: default the latest sft run)")
    parser.add_argument("--set", dest="overrides", action="append", type=parse_override, default=[],
                        metavar="KEY=VALUE", help="override a recipe value; dotted keys reach into lists and maps")
    args = parser.parse_args(argv)
    run_stage(StageRun(stage=args.stage, recipe=args.recipe, runs_dir=args.runs_dir, run_id=args.run_id,
                       parent=args.parent, overrides=dict(args.overrides), root=Path.cwd()))


if __name__ == "__main__":
    main()
