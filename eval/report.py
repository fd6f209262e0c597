"""Our eval runs beside the OpenBioLLM model card's table, with a bar chart.

    python -m eval report runs/<id> [RESULTS...] [--out report.md] [--brief]

RESULTS are results.json files from `python -m eval run`, or run folders holding eval/results.json.
Writes the card's nine columns plus Avg (our runs first, then the published rows of eval/published.yaml)
to report.md (default: beside the first results.json), the chart to report.png beside it, and prints
the table (with --brief, for ``make eval``: each run's Avg and where the report is).
Published cells no whole number of test items can give are flagged. A run whose release GGUFs were scored
(``runs/<id>/eval/gguf/<QUANT>/``, release/build.py) gets a table of its merged model beside each quantization:
accuracy with its interval, the change of Avg, the generation check's stop rate and the size.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from common.files import atomic_writer
from eval import chart, versus_base
from eval.generation_check import figure_words, percent
from eval.paired import ALPHA, Paired, outcomes_from_samples, pair, wilson
from eval.published import (
    PUBLISHED,
    TASKS,
    BadInput,
    Published,
    achievable,
    avg_agrees,
    load_published,
    mean_of_cells,
    neighbours,
)
from inference.gguf_file import gguf_eval_dir

ROOT = PUBLISHED.parents[1]
CHART_ROWS = ("OpenBioLLM-70B", "OpenBioLLM-8B", "GPT-4")
Z95 = 1.96
SCORERS = {"llama-cpp": "by llama.cpp itself, in-process (lm-eval backend llama-cpp)",
           "hf": "by lm-eval's hf backend on their dequantized weights"}  # summary.settings.backend -> words
PIPELINE_NOTE = ("**Pipeline check, not a benchmark.** {runs} scored the small bundled fixture items, not the "
                 "benchmarks' test sets: the numbers show the pipeline runs end to end and say nothing about the "
                 "model. Do not compare them with the published rows.")


@dataclass
class Score:
    acc: float  # fraction correct, 0..1
    se: float | None  # standard error of acc
    n: int
    se_computed: bool = False  # True when lm-eval gave none and we computed it


@dataclass
class ScoredRun:
    name: str
    path: Path
    summary: dict
    scores: dict[str, Score]
    others: list[str] = field(default_factory=list)  # tasks in the file outside the nine
    generation: dict | None = None  # the generation check's figures (eval/generation_check.py)
    versus: dict | None = None  # summary.versus_base: paired counts against its base model (eval/versus_base.py)


def results_file(arg: str) -> Path:
    """A results.json, given it or a folder holding eval/results.json (a run) or results.json."""
    path = Path(arg)
    for candidate in (path, path / "eval" / "results.json", path / "results.json"):
        if candidate.is_file():
            return candidate
    raise BadInput(f"{path}: no results.json here (write one with `python -m eval run`)")


def load_run(path: Path) -> ScoredRun:
    """One results.json's summary: accuracy, standard error and item count per task."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise BadInput(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not UTF-8 text (byte {err.start}); is it a results.json?") from None
    except RecursionError:
        raise BadInput(f"{path}: JSON nested too deeply to read") from None
    summary = data.get("summary") if isinstance(data, dict) else None
    if not isinstance(summary, dict) or not isinstance(summary.get("tasks"), dict):
        raise BadInput(f"{path}: no summary.tasks object (the part `python -m eval run` writes)")
    scores, others = {}, []
    for task, entry in summary["tasks"].items():
        if task not in TASKS:
            others.append(task)
            continue
        entry = entry if isinstance(entry, dict) else {}
        acc, n, se = entry.get("acc"), entry.get("n"), entry.get("stderr")
        if not isinstance(acc, int | float) or not 0 <= acc <= 1:
            raise BadInput(f"{path}: summary.tasks.{task}.acc is {acc!r}, expected a fraction from 0 to 1")
        if not isinstance(n, int) or n < 1:
            raise BadInput(f"{path}: summary.tasks.{task}.n is {n!r}, expected a positive item count")
        if isinstance(se, int | float) and math.isfinite(se) and se >= 0:
            scores[task] = Score(acc, se, n)
        else:  # lm-eval writes "N/A" when it has none; this is its formula (lm_eval.api.metrics.mean_stderr)
            scores[task] = Score(acc, math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else None, n, True)
    name = summary.get("run_id") or Path(str(summary.get("model") or path.parent)).name
    try:
        versus = versus_base.loaded(summary, str(path))
    except ValueError as err:
        raise BadInput(str(err)) from None
    return ScoredRun(name, path, summary, scores, others, generation_of(data, path), versus)


def generation_of(data: dict, path: Path) -> dict | None:
    """The generation check's figures: results.json's ``generation_check``, else generation_check.json beside it."""
    found = data.get("generation_check")
    beside = path.with_name("generation_check.json")
    if found is None and beside.is_file():
        try:
            found = json.loads(beside.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadInput(f"{beside}: not valid JSON") from None
    if not isinstance(found, dict) or not isinstance(found.get("use_cases"), dict):
        return None
    rows = [found.get("overall"), *found["use_cases"].values()]
    keys = ("answers", "stop_rate", "median_tokens", "p95_tokens", "repetition_rate", "leak_rate")
    if not all(isinstance(row, dict) and all(isinstance(row.get(k), int | float) for k in keys) for row in rows):
        raise BadInput(f"{path}: generation_check: expected overall and use_cases figures ({', '.join(keys)})")
    return found


def generation_lines(run: ScoredRun) -> list[str]:
    """A run's generation-check table: one row per use case, then overall."""
    g = run.generation or {}
    rows = [*g["use_cases"].items(), ("**overall**", g["overall"])]
    return ["", f"**{run.name}**, at most {g.get('max_new_tokens')} new tokens:", "",
            "| prompts | n | stop rate | median tokens | p95 tokens | repetition | leaks |", "| --- " * 7 + "|",
            *(f"| {case} | {f['answers']} | {percent(f['stop_rate'])} | {f['median_tokens']:g} | {f['p95_tokens']} | "
              f"{percent(f['repetition_rate'])} | {percent(f['leak_rate'])} |" for case, f in rows)]


def gguf_runs(results: Path) -> dict[str, ScoredRun]:
    """The scored GGUFs beside a run's ``eval/results.json`` (``eval/gguf/<QUANT>/results.json``), by type."""
    found = [load_run(path) for path in results.parent.glob(f"{gguf_eval_dir(Path(), '*')}/results.json")]
    found.sort(key=lambda run: -(gguf_size(run) or 0))  # F16, Q8_0, Q4_K_M...
    return {run.path.parent.name: run for run in found}


def size_words(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def versus(merged: ScoredRun, run: ScoredRun) -> tuple[float | None, float | None]:
    """(``run``'s mean accuracy over the merged run's tasks it has, its change against merged's on those tasks)."""
    shared = [t for t in merged.scores if t in run.scores]
    if not shared:
        return None, None
    mean = sum(run.scores[t].acc for t in shared) / len(shared)
    return mean, mean - sum(merged.scores[t].acc for t in shared) / len(shared)


def gguf_size(run: ScoredRun) -> int | None:
    return (run.summary.get("gguf") or {}).get("size")


def stop_words(run: ScoredRun) -> str:
    return percent(run.generation["overall"]["stop_rate"]) if run.generation else "-"


def quant_lines(merged: ScoredRun, quants: dict[str, ScoredRun]) -> list[str]:
    """Merged beside each quantization: accuracy ± 95% interval on the merged run's tasks, Avg and its change,
    the generation check's stop rate, and the size (merged: its safetensors; a GGUF: the file)."""
    tasks = list(merged.scores)
    merged_size = sum(p.stat().st_size for p in (merged.path.parent.parent / "merged").glob("*.safetensors")) or None

    def row(label: str, run: ScoredRun, size: int | None) -> str:
        cells = [f"{100 * run.scores[t].acc:.1f} {interval(run.scores[t].se)}" if t in run.scores else "-"
                 for t in tasks]
        mean, delta = versus(merged, run)
        change = "" if run is merged or delta is None else f"{100 * delta:+.1f}"
        avg = "-" if mean is None else f"{100 * mean:.1f}"
        paired = None if run is merged else quant_paired(merged, run)
        items = " | | | | " if paired is None else f" | {paired.n} items: {paired_cells(paired)} | "
        return (f"| {label} | {size_words(size)} | " + " | ".join(cells) + f" | {avg} | {change}" + items
                + f" {stop_words(run)} |")

    lines = ["| model | size | " + " | ".join(TASKS[t][0] for t in tasks) + " | Avg | Δ Avg | paired Δ against "
             "merged [95% CI] | GGUF only / merged only | McNemar p | stop rate |",
             "| --- " * (len(tasks) + 8) + "|", row(f"**{merged.name}** merged (safetensors)", merged, merged_size)]
    lines += [row(f"{quant} GGUF", run, gguf_size(run)) for quant, run in quants.items()]
    pipeline = [name for name, run in [("merged", merged), *quants.items()] if run.summary.get("pipeline_check")]
    notes = ["Accuracy (%) ± the 95% interval, zero-shot; Δ Avg: points against merged over the same tasks; "
             f"{scorer_words(quants)}; paired Δ: the GGUF against merged on the same items, all tasks pooled, "
             "with McNemar's exact test on the items only one of them got right; stop rate from the generation "
             "check (llama.cpp for the GGUFs)."]
    if pipeline:
        notes.append(f"PIPELINE CHECK ({', '.join(pipeline)}): bundled fixture items, not the test sets.")
    return [*lines, "", *notes]


def accuracy_words(correct: int, n: int) -> str:
    """``52.0 [42.3, 61.6]``: accuracy (%) and its 95% Wilson interval."""
    low, high = wilson(correct, n)
    return f"{100 * correct / n:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def paired_cells(paired: Paired) -> str:
    """The difference B - A with its interval, the discordant counts and McNemar's p, as table cells."""
    low, high = paired.difference_interval
    return (f"{100 * paired.difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] | {paired.b_only} / "
            f"{paired.a_only} | {paired.p_value:.2g}")


def verdict_cell(paired: Paired, name: str = "base") -> str:
    """``**below base**`` (significant, in bold), ``above base``, ``level``; ``(ns)`` when p >= 0.05."""
    if paired.b_only == paired.a_only:
        return "level"
    below = paired.b_only < paired.a_only
    words = f"{'below' if below else 'above'} {name}" + ("" if paired.p_value < ALPHA else " (ns)")
    return f"**{words}**" if below else words


def base_lines(run: ScoredRun, level: str = "##") -> list[str]:
    """The run beside its base model, item-paired: per task and over all tasks, with the floors."""
    found = run.versus or {}
    base = found["base"]
    rows = []
    for task, entry in found["tasks"].items():
        paired = versus_base.paired_of(entry)
        same = entry["always_same"]
        def letter(index: int, task: str = task) -> str:
            return ("yes", "no", "maybe")[index] if task == "pubmedqa" else "ABCD"[index]

        given = entry.get("most_given") or {}
        bias = " / ".join(f"{letter(g['answer'])} {100 * g['share']:.0f}%"
                          for g in (given.get("base"), given.get("run")) if g) or "-"
        rows.append(f"| {TASKS[task][0] if task in TASKS else task} | {paired.n} | "
                    f"{accuracy_words(paired.a_correct, paired.n)} | {accuracy_words(paired.b_correct, paired.n)} | "
                    f"{paired_cells(paired)} | {verdict_cell(paired)} | {100 * entry['floor']:.1f} | "
                    f"{100 * same['share']:.1f} ({letter(same['answer'])}) | {bias} |")
    total = versus_base.overall(found)
    rows.append(f"| **all tasks** | {total.n} | {accuracy_words(total.a_correct, total.n)} | "
                f"{accuracy_words(total.b_correct, total.n)} | {paired_cells(total)} | {verdict_cell(total)} | | | |")
    sources = sorted(set(base.get("outcomes_from", {}).values()))
    low, high = total.difference_interval
    said = (f"{run.name} scores {100 * total.b_acc:.1f}% over all {total.n} items, its base {100 * total.a_acc:.1f}%: "
            f"Δ {100 * total.difference:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}], McNemar p = "
            f"{total.p_value:.2g}.")
    plain = f"**Below its base model.** {said}" if total.b_only < total.a_only else said
    return [f"{level} {run.name} beside its base model, item by item", "",
            f"Base: `{base['model']}` (content sha256 `{str(base['key'])[:16]}...`); its outcomes on these items: "
            f"{', '.join(sources)}.", "", plain, "",
            "| task | n | base acc [95% CI] | run acc [95% CI] | Δ run - base [95% CI] | run only / base only "
            "| McNemar p | verdict | floor | always the same answer | most given answer, base / run |",
            "| --- " * 11 + "|", *rows, "",
            "Accuracy (%) with its 95% Wilson interval, both models on the same items. Δ: points, with the paired "
            "95% interval; run only / base only: the items only one of the two got right; McNemar: exact two-sided "
            "test on those. ns: not significant at 5%. Floor: PubMedQA's majority answer share on its whole test "
            "split, else one in four; always the same answer: the score of giving the commonest gold answer on "
            "these items; most given answer: the answer each model picks most often, and on what share of the items "
            "(a model that always picks one letter scores that letter's share, and knows nothing)."]


def quant_paired(merged: ScoredRun, run: ScoredRun) -> Paired | None:
    """A GGUF against the merged model, items pooled over the tasks both scored (from their per-sample logs)."""
    total = None
    for task in merged.scores:
        mine, theirs = merged.path.parent / "samples" / f"{task}.jsonl", run.path.parent / "samples" / f"{task}.jsonl"
        if task in run.scores and mine.is_file() and theirs.is_file():
            try:
                found = pair(outcomes_from_samples(mine), outcomes_from_samples(theirs))
            except ValueError:
                continue  # no shared items
            total = found if total is None else total + found
    return total


def scorer_words(quants: dict[str, ScoredRun]) -> str:
    """How the GGUFs were scored, read from each results.json's ``summary.settings.backend``."""
    by: dict[str, list[str]] = {}
    for quant, run in quants.items():
        backend = (run.summary.get("settings") or {}).get("backend")
        words = SCORERS.get(backend, f"by lm-eval's {backend} backend" if backend else "by an unrecorded backend")
        by.setdefault(words, []).append(quant)
    if len(by) == 1:
        return f"GGUFs scored {next(iter(by))}"
    return "GGUFs scored: " + "; ".join(f"{', '.join(names)} {words}" for words, names in by.items())


def quant_brief(merged: ScoredRun, quant: str, run: ScoredRun) -> str:
    """``  <run> Q8_0 GGUF: Avg 45.1 (-0.4 against merged), stop 60%, 137.5 MiB``."""
    mean, delta = versus(merged, run)
    avg = "-" if mean is None else f"{100 * mean:.1f} ({100 * delta:+.1f} against merged)"
    return f"  {merged.name} {quant} GGUF: Avg {avg}, stop {stop_words(run)}, {size_words(gguf_size(run))}"


def interval(se: float | None) -> str:
    return "± ?" if se is None else f"± {100 * Z95 * se:.1f}"


def our_cells(run: ScoredRun) -> list[str]:
    """The nine cells and Avg of one of our runs: accuracy ± 95% half-width, n where not the full set."""
    cells = []
    for task, (_, full) in TASKS.items():
        s = run.scores.get(task)
        cells.append("-" if s is None else f"{100 * s.acc:.1f} {interval(s.se)}{' ‡' if s.se_computed else ''}"
                     + (f" (n={s.n})" if s.n != full else ""))
    if not run.scores:
        return [*cells, "-"]
    mean, se = average(run)
    avg = f"{100 * mean:.1f} {interval(se)}"
    done = len(run.scores)
    return [*cells, avg if done == len(TASKS) else f"{avg} (partial: {done}/{len(TASKS)} tasks)"]


def average(run: ScoredRun) -> tuple[float, float | None]:
    """Plain mean accuracy over the tasks present, and its standard error (the tasks' taken as independent)."""
    present = list(run.scores.values())
    ses = [s.se for s in present]
    se = None if None in ses else math.sqrt(sum(x * x for x in ses)) / len(present)
    return sum(s.acc for s in present) / len(present), se


def render(runs: list[ScoredRun], source: dict, rows: list[Published], chart_name: str,
           published: Path = PUBLISHED, quantized: dict[str, dict[str, ScoredRun]] | None = None
           ) -> tuple[str, list[str]]:
    """The report's markdown, and the stdout warning lines (empty unless a pipeline check)."""
    checks = [r.name for r in runs if r.summary.get("pipeline_check")]
    warning = [PIPELINE_NOTE.format(runs=", ".join(checks))] if checks else []
    out = ["# Eval report: our runs beside the OpenBioLLM model card", ""]
    out += [f"> {w}\n" for w in warning]
    out += ["| model | " + " | ".join(label for label, _ in TASKS.values()) + " | Avg |",
            "| --- " * (len(TASKS) + 2) + "|"]
    out += [f"| **{r.name}** (ours) | " + " | ".join(our_cells(r)) + " |" for r in runs]
    flagged, unsure, off = [], [], []
    for row in rows:
        cells = []
        for task, (label, n) in TASKS.items():
            value, marks = row.cells[task], ""
            if not achievable(value, n):
                marks += " †"
                flagged.append(f"{row.name}, {label} {value}: {n} items give {neighbours(value, n)}")
            if task in row.unsure:
                marks += " ?"
                unsure.append(f"{row.name}, {label}")
            cells.append(value + marks)
        avg = row.avg + (" ?" if "avg" in row.unsure else "")
        if not avg_agrees(row):
            avg += " §"
            off.append(f"{row.name}: Avg {row.avg}, mean of its nine cells {float(mean_of_cells(row)):.2f}. {row.note}")
        out.append(f"| {row.name} | " + " | ".join(cells) + f" | {avg} |")
    out += ["", f"![accuracy per task]({chart_name})", "",
            f"Ours: accuracy (%) ± the 95% interval, {Z95} * lm-eval's standard error. (n=…): scored on n items, "
            "not the full test set. Avg: the plain mean of the nine, its ± from their standard errors taken as "
            "independent; a run missing tasks shows - and a partial Avg over the tasks present, not comparable "
            "with the card's.", ""]
    if any(s.se_computed for r in runs for s in r.scores.values()):
        out += ["‡ lm-eval gave no standard error here; computed as sqrt(p(1-p)/(n-1)), its formula for accuracy.", ""]
    for r in runs:
        s = r.summary
        out.append(f"- **{r.name}**: `{r.path}`, model `{s.get('model')}`, settings {json.dumps(s.get('settings'))}"
                   + (f"; tasks outside the nine, not shown: {', '.join(r.others)}" if r.others else ""))
    for r in runs:
        if r.versus:
            out += ["", *base_lines(r)]
    for r in runs:
        if (quantized or {}).get(r.name):
            out += ["", f"## Merged vs quantized (GGUF): {r.name}", "", *quant_lines(r, quantized[r.name])]
    checked = [r for r in runs if r.generation]
    if checked:
        out += ["", "## Generation check", "",
                "Greedy answers to held-out prompts (`python -m eval generate-check`): stop rate, the share ending "
                "on a terminator before the limit; length in new tokens; repetition, the share with a 4-gram of "
                "tokens three times; leaks, the share showing a chat-template token. Benchmarks cannot show a model "
                "that never ends its turn."]
        for r in checked:
            out += generation_lines(r)
    where = published.relative_to(ROOT) if published.is_relative_to(ROOT) else published
    out += ["", f"Published rows: {source.get('url')}, transcribed {source.get('transcribed')} ({where}); "
            f"{source.get('setting')}.", ""]
    if flagged:
        out += ["† No whole number of the task's full test set gives this figure at the card's precision "
                "(rounded or truncated):", "", *[f"- {f}" for f in flagged], ""]
    if unsure:
        out += ["? Our transcription of this cell is unsure; check it against the card:", "",
                *[f"- {u}" for u in unsure], ""]
    if off:
        out += ["§ The card's Avg is not the mean of its nine cells:", "", *[f"- {o}" for o in off], ""]
    return "\n".join(out), warning


def chart_series(runs: list[ScoredRun], rows: list[Published]) -> list[chart.Series]:
    """Our runs (with 95% half-widths; Avg only when complete) and the chart's published rows, in percent."""
    series: list[chart.Series] = []
    for r in runs:
        accs = [100 * r.scores[t].acc if t in r.scores else None for t in TASKS]
        errs = [100 * Z95 * r.scores[t].se if t in r.scores and r.scores[t].se is not None else None for t in TASKS]
        mean, se = average(r) if len(r.scores) == len(TASKS) else (None, None)
        series.append((f"{r.name} (ours)", [*accs, mean and 100 * mean], [*errs, se and 100 * Z95 * se]))
    series += [(p.name, [float(p.cells[t]) for t in TASKS] + [float(p.avg)], None)
               for p in rows if p.name in CHART_ROWS]
    return series


def brief_lines(runs: list[ScoredRun], rows: list[Published], warning: list[str], out: Path, png: Path,
                quantized: dict[str, dict[str, ScoredRun]] | None = None) -> list[str]:
    """The pipeline-check warning, each run's Avg beside the chart's published rows, and where the report is."""
    card = ", ".join(f"{p.name} {p.avg}" for p in rows if p.name in CHART_ROWS)
    lines = [f"WARNING: {line.replace('**', '')}" for line in warning]
    lines += [f"  {r.name}: Avg {our_cells(r)[-1]} (accuracy %, ± 95% interval)" + (f"; on the card: {card}" if card
              else "") for r in runs]
    lines += [f"  {r.name}: {versus_base.overall_words(r.versus)}" for r in runs if r.versus]
    lines += [f"  {r.name}: generation check: {figure_words(r.generation['overall'])}" for r in runs if r.generation]
    for r in runs:
        for quant, q in (quantized or {}).get(r.name, {}).items():
            lines.append(quant_brief(r, quant, q))
    return [*lines, f"report: {out} and {png} (beside the card's {len(rows)} published rows)"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results.json files, or run folders holding eval/results.json")
    parser.add_argument("--out", type=Path, help="report path (default: report.md beside the first results.json)")
    parser.add_argument("--published", type=Path, default=PUBLISHED, help="the published table (default: %(default)s)")
    parser.add_argument("--brief", action="store_true",
                        help="print each run's Avg and where the report is, not the whole table (make eval)")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(results_file(arg)) for arg in args.results]
        source, rows = load_published(args.published)
    except (BadInput, OSError) as err:
        raise SystemExit(f"eval report: {err}") from None
    names = [r.name for r in runs]
    for i, r in enumerate(runs):
        if names.count(r.name) > 1:
            r.name = f"{r.name} #{i + 1}"
    try:
        quantized = {r.name: found for r in runs if (found := gguf_runs(r.path))}
    except BadInput as err:
        raise SystemExit(f"eval report: {err}") from None
    out = args.out or runs[0].path.with_name("report.md")
    png = out.with_suffix(".png")
    text, warning = render(runs, source, rows, png.name, args.published.resolve(), quantized)
    title = "Accuracy per task" + (" (PIPELINE CHECK on fixture items, not a benchmark)" if warning else "")
    chart.draw([label for label, _ in TASKS.values()] + ["Avg"], chart_series(runs, rows), png, title)
    with atomic_writer(out) as handle:
        handle.write(text + "\n")
    if args.brief:
        print("\n".join(brief_lines(runs, rows, warning, out, png, quantized)))
        return
    for line in warning:
        print(f"WARNING: {line.replace('**', '')}\n")
    print(text.split("\n\n![")[0])
    for r in runs:
        if r.versus:
            print("\n" + "\n".join(base_lines(r)))
    for name in quantized:
        print(f"\n## Merged vs quantized (GGUF): {name}" + text.split(f"## Merged vs quantized (GGUF): {name}")[1]
              .split("\n\n## ")[0].split("\n\nPublished rows:")[0])
    if "\n## Generation check\n" in text:
        print("\n## Generation check" + text.split("\n## Generation check")[1].split("\n\nPublished rows:")[0])
    print(f"\nwrote {out} and {png}")


if __name__ == "__main__":
    main()
