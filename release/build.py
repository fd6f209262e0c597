"""python -m release build RUN [--name NAME] [--out releases] [--quant Q ...] [--no-eval]: a run as a release folder.

Writes OUT/NAME/ (default NAME: the run id): the run's merged/ weights (safetensors), config and tokenizer files
with its chat template, copied as they are; ``generation_config.json`` with every terminator as eos and greedy
decoding; ``gguf/NAME-<QUANT>.gguf`` (F16, Q8_0 and Q4_K_M unless ``--quant``; ``--quant none`` for none), made by
llama.cpp's own tools (release/gguf.py); the loss curves (``loss.png``, the parent SFT run's as ``loss-sft.png``);
the model card ``README.md``; and ``release.json`` (source runs, code commit, every file's sha256 and size, each
GGUF's type, ids and figures). Each GGUF is answered by llama.cpp (the generation check) and, when the run was
evaluated, scored like the merged model on the same benchmarks (not F16, the lossless reference; ``--no-eval``
skips), into the run's ``eval/gguf/<QUANT>/``, so the card shows them side by side. The folder is built beside its
place and renamed in: an existing release is replaced whole, or, on any failure, left as it was.

The run is locked for the whole build (common/rundir.py's ``RunWriter``: a second build, or a merge or eval of the
same run, gets one line naming the holder, exit 2), and its adapter/ and merged/ are checked against the sha256s
its manifest records first (a changed file is refused, named; the merged files' hashes are reused for
release.json). What the build writes into the run (``eval/gguf/<QUANT>/``, ``eval/gguf/gguf.log``) is written aside
and renamed in only when the build succeeds: a failed build leaves the run folder as it was. The run's manifest
records the release (``releases``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from common.errors import InputError
from common.files import sha256_file, write_json_atomic
from common.progress import StepLine
from common.rundir import RunWriter, check_run_id, now, read_manifest, replace_whole
from eval.report import load_run
from inference.gguf_file import RELEASE_JSON, gguf_eval_dir, read_release
from inference.model_source import latest_usable_run, succeeded_manifest
from inference.terminators import end_of_turn_tokens
from release import gguf
from release.generation_config import release_generation_config
from release.model_card import Stage, render_card

MODEL_FILES = ("*.safetensors", "model.safetensors.index.json", "config.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
               "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json")
ROOT = Path(__file__).resolve().parents[1]
GGUF_LOG = "gguf.log"  # llama.cpp's tools' output, in the run's eval/gguf/


def stages_of(run: Path) -> list[Stage]:
    """The run and, for a DPO run, its parent SFT run first (manifest ``parent``); refused unless succeeded."""
    if not (run / "manifest.json").is_file():
        raise InputError(f"{run}: not a run folder (no manifest.json)")
    stages = [Stage(run, succeeded_manifest(run))]
    parent = stages[0].manifest.get("parent") or {}
    if parent:  # recorded relative to where the launcher ran; else beside this run
        found = [p for p in (Path(parent.get("path", "")), run.parent / str(parent.get("run_id")))
                 if (p / "manifest.json").is_file()]
        if not found:
            raise InputError(f"{run}: its parent run {parent.get('path') or parent.get('run_id')} is not here")
        stages.insert(0, Stage(found[0], read_manifest(found[0])))
    return stages


def model_files(merged: Path) -> list[Path]:
    """The files of ``merged/`` a release carries; refused without safetensors weights or a chat template."""
    files = sorted({p for pattern in MODEL_FILES for p in merged.glob(pattern) if p.is_file()})
    if not any(p.suffix == ".safetensors" for p in files):
        raise InputError(f"{merged}: no *.safetensors weights (is the run merged? `python -m launch merge`)")
    config = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8")) \
        if (merged / "tokenizer_config.json").is_file() else {}
    if not config.get("chat_template") and not any(p.name.startswith("chat_template") for p in files):
        raise InputError(f"{merged}: the tokenizer has no chat template")
    return files


def file_records(folder: Path, known: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` but release.json: relative path -> sha256 and size (``known``: sha256s already
    computed, by relative path)."""
    known = known or {}
    found = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and path.name != RELEASE_JSON:
            found[name] = {"sha256": known.get(name) or sha256_file(path), "size": path.stat().st_size}
    return found


def gguf_eval_argv(run: Path, path: Path, out: Path) -> list[str] | None:
    """``eval run`` arguments scoring ``path`` as the run's merged model was scored; None when it was not."""
    results = run / "eval" / "results.json"
    if not results.is_file():
        return None
    summary = json.loads(results.read_text(encoding="utf-8")).get("summary") or {}
    settings = summary.get("settings") or {}
    argv = ["--model", str(path), "--out", str(out), "--tasks", *summary.get("tasks", {})]
    if summary.get("benchmarks"):  # the same prepared files (a pipeline check's fixtures too)
        argv += ["--benchmarks", summary["benchmarks"]]
    if settings.get("limit") is not None:
        argv += ["--limit", str(settings["limit"])]
    if settings.get("full"):  # the same items: the tasks scored whole, the seeded sample of the others
        argv += ["--full", *settings["full"]]
    return argv + (["--chat-template"] if settings.get("chat_template") else [])


def write_gguf(stage_dir: Path, run: Stage, name: str, quants: list[str], evaluate: bool,
               tokenizer: Any, run_stage: Path) -> list[dict[str, Any]]:
    """The GGUF files in ``stage_dir/gguf/``, each answered by llama.cpp and (``evaluate``) scored; their records.
    ``tokenizer``: the merged model's; ``run_stage``: the folder that becomes the run's ``eval/gguf/`` (with
    ``gguf.log``) on success."""
    from eval import generation_check
    from eval import run as eval_run
    from inference.llama_cpp_tools import ensure

    tools = ensure()
    log = run_stage / GGUF_LOG
    with StepLine(f"export GGUF {', '.join(quants)} with llama.cpp (its output: {log})", unit="") as line:
        line.update(0)
        files = gguf.export(run.path / "merged", stage_dir / "gguf", name, quants, tools, log, tokenizer)
        line.close("done")
    records = []
    for quant, path in zip(quants, files, strict=True):
        out = run_stage / quant  # becomes gguf_eval_dir(run.path / "eval", quant)
        argv = gguf_eval_argv(run.path, path, out) if evaluate and quant != "F16" else None
        (out / "logs").mkdir(parents=True, exist_ok=True)
        with open(out / "logs" / "release.log", "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
            if argv:  # their headers and tables go to the log; their progress lines stay on the terminal
                eval_run.main(argv)
            check = generation_check.main(["--model", str(path), "--out", str(out),
                                           "--validation-from", str(run.path)])
        final = gguf_eval_dir(run.path / "eval", quant)
        records.append({**gguf.record(path, quant), "generation_check": check["overall"],
                        "eval": str(final / "results.json") if argv else None})
        scored = ""
        if argv:
            tasks = json.loads((out / "results.json").read_text(encoding="utf-8"))["summary"]["tasks"]
            scored = f", scored: mean accuracy {100 * sum(t['acc'] for t in tasks.values()) / len(tasks):.1f}%"
        print(f"  {path.name}: {path.stat().st_size / 2**20:.1f} MiB, llama.cpp stops "
              f"{100 * check['overall']['stop_rate']:.0f}% of {check['overall']['answers']} answers{scored} "
              f"(details: {final}/)", flush=True)
    return records


def write_release(stage_dir: Path, stages: list[Stage], name: str, quants: list[str] = (),
                  evaluate: bool = True, run_stage: Path | None = None,
                  known: dict[str, str] | None = None) -> None:
    """Everything a release holds, written into ``stage_dir`` (what goes into the run, into ``run_stage``);
    ``known``: sha256s of the run's files already read, by path in the run (``merged/model.safetensors``)."""
    from transformers import AutoTokenizer

    run = stages[-1]
    known = known or {}
    copied = {}
    mode = 0o666 & ~current_umask()
    for path in model_files(run.path / "merged"):
        shutil.copy2(path, stage_dir / path.name)
        (stage_dir / path.name).chmod(mode)  # as any file written here: a merge may leave its weights 0600
        if f"merged/{path.name}" in known:
            copied[path.name] = known[f"merged/{path.name}"]
    tokenizer = AutoTokenizer.from_pretrained(run.path / "merged")  # loaded once: the GGUFs, terminators, the card
    ggufs = write_gguf(stage_dir, run, name, list(quants), evaluate, tokenizer, run_stage) if quants else []
    write_json_atomic(stage_dir / "generation_config.json",
                      release_generation_config(run.path / "merged", tokenizer))
    images = {}
    for stage in stages:
        image = "loss.png" if stage is run else f"loss-{stage.name}.png"
        if (stage.path / "loss.png").is_file():
            shutil.copy2(stage.path / "loss.png", stage_dir / image)
            images[stage.name] = image
    end_tokens = end_of_turn_tokens(tokenizer)
    results = run.path / "eval" / "results.json"
    scored = {g["quant"]: load_run(run_stage / g["quant"] / "results.json") for g in ggufs if g["eval"]}
    card = render_card(name, stages, results if results.is_file() else None, images, ROOT, end_tokens,
                       ggufs=ggufs, quant_runs=scored)
    (stage_dir / "README.md").write_text(card, encoding="utf-8")
    write_json_atomic(stage_dir / RELEASE_JSON, {
        "name": name, "built_at": now(),
        "runs": [{"run_id": s.path.name, "stage": s.name, "path": str(s.path.resolve()),  # from any directory
                  "recipe": s.manifest.get("recipe")} for s in stages],
        "code": run.manifest.get("code"), "gguf": ggufs,
        "files": file_records(stage_dir, {**copied, **{f"gguf/{g['file']}": g["sha256"] for g in ggufs}}),
        "hub": None})


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def build_release(run: Path, name: str | None = None, out: Path = Path("releases"), quants: list[str] = (),
                  evaluate: bool = True) -> Path:
    """Build ``out/<name>`` from ``run`` (with a GGUF of each of ``quants``); return it."""
    quants = gguf.check_quants(list(quants))
    stages = stages_of(run)
    name = check_run_id(name or run.resolve().name, "--name")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder for releases")
    with RunWriter.open(stages[-1].path) as writer:  # before anything is made: a busy run changes nothing
        known = writer.verify()
        out.mkdir(parents=True, exist_ok=True)
        stage_dir = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out))
        stage_dir.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; give the folder the mode mkdir would have
        try:
            # what goes into the run: eval/gguf/<QUANT>/ (other types' scores kept) and eval/gguf/gguf.log
            with writer.staged("eval/gguf", keep=gguf.QUANTS) if quants else contextlib.nullcontext() as run_stage:
                write_release(stage_dir, stages, name, quants, evaluate, run_stage, known)
            replace_whole(stage_dir, out / name)
        except BaseException:
            shutil.rmtree(stage_dir, ignore_errors=True)
            raise
        releases = [r for r in read_manifest(writer.path).get("releases") or [] if r.get("name") != name]
        writer.update_manifest(releases=[*releases, {"name": name, "path": str(out / name), "built_at": now()}])
    return out / name


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m release build", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", type=Path, help="runs/<id> (default: the latest dpo run, else sft)")
    parser.add_argument("--name", help="the release's folder name (default: the run id)")
    parser.add_argument("--out", type=Path, default=Path("releases"), help="where releases go (default: %(default)s)")
    parser.add_argument("--quant", nargs="+", default=list(gguf.DEFAULT_QUANTS), metavar="Q",
                        help=f"GGUF types to export (default: {' '.join(gguf.DEFAULT_QUANTS)}; one of "
                             f"{', '.join(gguf.QUANTS)}; none: no GGUF)")
    parser.add_argument("--no-eval", action="store_true", help="do not score the GGUFs on the benchmarks")
    args = parser.parse_args(argv)
    quants = [] if [q.lower() for q in args.quant] == ["none"] else args.quant
    folder = build_release(args.run or latest_usable_run(), args.name, args.out, quants, not args.no_eval)
    record = read_release(folder)
    size = sum(f["size"] for f in record["files"].values())
    print(f"release {folder}/: {len(record['files'])} files, {size / 2**20:.1f} MiB; card {folder}/README.md\n"
          f"next: python -m release publish {folder} --repo ORG/NAME [--private] [--dry-run]")
