"""`python -m eval report`: our runs beside the model card's table, the card's own figures checked, a chart.

Every results.json here is written by the test in the shape `python -m eval run` writes; no model runs.
Standard errors come from lm-eval's own `mean_stderr` on per-item 0/1 scores, as lm-eval computes them.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from helpers import ROOT
from lm_eval.api.metrics import mean_stderr

from eval.benchmarks import TASKS as BENCHMARKS
from eval.published import PUBLISHED, TASKS, achievable, avg_agrees, load_published, mean_of_cells
from eval.report import main


def scores(correct: dict[str, int], sizes: dict[str, int] | None = None, stderr: bool = True) -> dict:
    """summary.tasks for ``correct[task]`` right answers out of the task's full size (or ``sizes[task]``)."""
    out = {}
    for task, k in correct.items():
        n = (sizes or {}).get(task, TASKS[task][1])
        items = [1] * k + [0] * (n - k)
        out[task] = {"acc": k / n, "stderr": mean_stderr(items) if stderr else "N/A", "n": n}
    return out


def write_results(folder: Path, tasks: dict, run_id: str = "run-a", pipeline_check: bool = False) -> Path:
    """A results.json in ``folder`` as `python -m eval run` writes it."""
    settings = {"backend": "hf", "chat_template": False, "dtype": "float32", "batch_size": 8, "limit": None,
                "num_fewshot": 0}
    summary = {"model": f"runs/{run_id}/merged", "run_id": run_id, "pipeline_check": pipeline_check,
               "benchmarks": "fixtures" if pipeline_check else "data/benchmarks", "settings": settings,
               "tasks": tasks}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(json.dumps({"results": {}, "summary": summary}, indent=2), encoding="utf-8")
    return path


def table(report: str) -> dict[str, dict[str, str]]:
    """The report's markdown table: row name -> column header -> cell."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


HALF = {task: n // 2 for task, (_, n) in TASKS.items()}  # about 50% right on every task


def test_published_rows_average_to_their_printed_avg_except_where_the_file_says_the_card_disagrees():
    source, rows = load_published()
    assert "huggingface.co/aaditya/Llama3-OpenBioLLM-70B" in source["url"] and "by hand" in source["transcribed"]
    for row in rows:
        assert avg_agrees(row) != row.avg_disagrees, f"{row.name}: mean {float(mean_of_cells(row)):.3f}, Avg {row.avg}"
        if row.avg_disagrees:
            assert row.note and "avg" in row.unsure, f"{row.name}: a disagreeing Avg needs a note and an unsure mark"
    by_name = {row.name: row for row in rows}
    assert round(mean_of_cells(by_name["OpenBioLLM-70B"]), 2) == Fraction("86.06")
    assert round(mean_of_cells(by_name["OpenBioLLM-8B"]), 2) == Fraction("72.50")
    assert {"OpenBioLLM-70B", "OpenBioLLM-8B", "GPT-4", "Med-PaLM-2 (5-shot)", "Meditron-70B"} <= set(by_name)
    assert set(TASKS) == set(BENCHMARKS)  # the card's nine columns are the nine tasks `eval run` scores


def test_published_med_palm_1_row_is_the_cards_and_averages_to_its_avg():
    """The card prints Med-PaLM-1's MedQA as 67.6 and its Avg as 74.7 (a version from memory had 60.3, 73.66)."""
    row = next(row for row in load_published()[1] if row.name.startswith("Med-PaLM-1"))
    assert (row.cells["medqa_4options"], row.avg) == ("67.6", "74.7")
    assert avg_agrees(row) and not row.avg_disagrees and not row.unsure


@pytest.mark.parametrize(("printed", "n"), [
    ("93", 100), ("93.75", 272), ("78.162", 1273), ("74.014", 4183),  # exact or rounded k/n
    ("33.33", 3), ("66.67", 3), ("66.66", 3),  # 2/3 rounded up, and truncated
    ("0", 5), ("100", 5), ("20.0", 5),
])
def test_a_figure_some_whole_count_gives_at_the_printed_precision_is_achievable(printed, n):
    assert achievable(printed, n)


@pytest.mark.parametrize(("printed", "n"), [
    ("93.197", 100), ("78.97", 500), ("50.5", 100), ("33.34", 3), ("92.93", 265), ("58.993", 1273),
])
def test_a_figure_no_whole_count_gives_is_not_achievable(printed, n):
    assert not achievable(printed, n)


def test_every_whole_count_rounded_to_any_precision_is_achievable():
    for _, n in TASKS.values():
        for k in range(0, n + 1, max(1, n // 97)):
            for places in range(4):
                printed = f"{Decimal(100 * k) / Decimal(n):.{places}f}"
                assert achievable(printed, n), f"{k}/{n} printed as {printed}"


def test_report_puts_our_run_in_the_cards_columns_beside_the_published_rows(tmp_path, capsys):
    results = write_results(tmp_path / "runs/run-a/eval", scores(HALF))
    main([str(tmp_path / "runs/run-a")])  # a run folder: finds eval/results.json, writes beside it
    report = (results.parent / "report.md").read_text(encoding="utf-8")
    rows = table(report)
    header = list(next(iter(rows.values())))
    assert header == ["model", *[label for label, _ in TASKS.values()], "Avg"]
    ours = rows["**run-a** (ours)"]
    accs = []
    for task, (label, n) in TASKS.items():
        p = HALF[task] / n
        accs.append(p)
        half_width = 1.96 * mean_stderr([1] * HALF[task] + [0] * (n - HALF[task]))
        assert ours[label] == f"{100 * p:.1f} ± {100 * half_width:.1f}"  # full test set: no n shown
    assert ours["Avg"].startswith(f"{100 * sum(accs) / 9:.1f} ± ") and "partial" not in ours["Avg"]
    assert rows["OpenBioLLM-70B"]["Pro Medicine"] == "93.75"  # 255/272: not flagged
    assert rows["OpenBioLLM-8B"]["Avg"] == "72.502"
    assert "pipeline check" not in report.lower()
    assert "| **run-a** (ours) |" in capsys.readouterr().out


def test_run_missing_tasks_shows_dashes_and_marks_its_avg_partial(tmp_path):
    partial = {t: k for t, k in HALF.items() if t not in ("pubmedqa", "medmcqa")}
    results = write_results(tmp_path, scores(partial))
    main([str(results), "--out", str(tmp_path / "out/report.md")])
    ours = table((tmp_path / "out/report.md").read_text(encoding="utf-8"))["**run-a** (ours)"]
    assert ours["PubMedQA"] == "-" and ours["MedMCQA"] == "-"
    mean7 = sum(HALF[t] / TASKS[t][1] for t in partial) / 7
    assert ours["Avg"].startswith(f"{100 * mean7:.1f} ±") and "partial: 7/9" in ours["Avg"]


def test_limited_run_shows_n_and_a_missing_stderr_is_computed_as_lm_eval_would(tmp_path):
    results = write_results(tmp_path, scores({"medmcqa": 17}, sizes={"medmcqa": 50}, stderr=False))
    main([str(results), "--out", str(tmp_path / "report.md")])
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    half_width = 1.96 * mean_stderr([1] * 17 + [0] * 33)
    assert table(report)["**run-a** (ours)"]["MedMCQA"] == f"34.0 ± {100 * half_width:.1f} ‡ (n=50)"
    assert "‡ lm-eval gave no standard error" in report


def test_pipeline_check_is_said_at_the_top_of_the_report_and_on_stdout(tmp_path, capsys):
    fixtures = scores(dict.fromkeys(TASKS, 2), sizes=dict.fromkeys(TASKS, 4))  # 2 of 4 bundled items each
    results = write_results(tmp_path, fixtures, pipeline_check=True)
    main([str(results), "--out", str(tmp_path / "report.md")])
    top = (tmp_path / "report.md").read_text(encoding="utf-8").split("| model |")[0]
    assert "Pipeline check, not a benchmark" in top and "fixture items" in top
    assert capsys.readouterr().out.startswith("WARNING: Pipeline check, not a benchmark")


def test_report_flags_published_figures_no_test_set_count_gives_and_lists_them(tmp_path):
    results = write_results(tmp_path, scores(HALF))
    main([str(results), "--out", str(tmp_path / "report.md")])
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    rows = table(report)
    assert rows["OpenBioLLM-70B"]["Medical Genetics"] == "93.197 †"
    assert "- OpenBioLLM-70B, Medical Genetics 93.197: 100 items give 93.000 (93/100) and 94.000 (94/100)" in report
    _, published = load_published()
    for row in published:  # every flag in the table is a figure the rule rejects, and the other way round
        for task, (label, n) in TASKS.items():
            assert ("†" in rows[row.name][label]) == (not achievable(row.cells[task], n))


def test_chart_is_a_valid_png_of_sane_size_beside_the_report(tmp_path):
    first = write_results(tmp_path / "a", scores(HALF), run_id="run-a")
    second = write_results(tmp_path / "b", scores({"pubmedqa": 300}), run_id="run-b")
    main([str(first), str(second), "--out", str(tmp_path / "report.md")])
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert 600 <= width <= 4000 and 300 <= height <= 3000 and len(png) > 10_000
    assert "![accuracy per task](report.png)" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_bad_results_are_refused_naming_the_file_and_reason(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"summary":\n  {"tasks": }\n}', encoding="utf-8")
    with pytest.raises(SystemExit, match=rf"{broken}:2: not valid JSON"):
        main([str(broken)])
    wrong = write_results(tmp_path / "w", {"medmcqa": {"acc": 41.2, "stderr": 0.01, "n": 4183}})
    with pytest.raises(SystemExit, match=r"results.json: summary.tasks.medmcqa.acc is 41.2, expected a fraction"):
        main([str(wrong)])
    with pytest.raises(SystemExit, match=r"no results.json here"):
        main([str(tmp_path / "nowhere")])


@pytest.mark.parametrize(("edit", "reason"), [
    (('"93.197", ', ""), "needs a name and 9 cells"),  # a cell lost
    (('"93.197"', "93.197"), "must be a quoted percentage"),  # unquoted: YAML would drop trailing zeros
])
def test_published_table_with_a_bad_row_is_refused_naming_its_line(tmp_path, edit, reason):
    text = PUBLISHED.read_text(encoding="utf-8").replace(*edit, 1)  # both edits hit the OpenBioLLM-70B row
    bad = tmp_path / "published.yaml"
    bad.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "name: OpenBioLLM-70B" in s)
    results = write_results(tmp_path, scores(HALF))
    with pytest.raises(SystemExit, match=rf"{bad}:{line}: row 'OpenBioLLM-70B': .*{reason}"):
        main([str(results), "--published", str(bad)])


def test_eval_report_command_runs_from_the_shell(tmp_path):
    results = write_results(tmp_path, scores(HALF))
    done = subprocess.run([sys.executable, "-m", "eval", "report", str(results)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.png").is_file()
    assert f"wrote {tmp_path / 'report.md'}" in done.stdout
    assert len(table(done.stdout)) == 1 + len(load_published()[1])  # our run and every published row


def test_report_reads_the_summary_eval_run_writes_from_lm_eval_results(tmp_path):
    from eval.lm_eval_tasks import summarize

    # lm-eval's results shape for our local tasks; PubMedQA as lm-eval leaves it with a single item: stderr "N/A".
    sizes = {**{t: n for t, (_, n) in TASKS.items()}, "pubmedqa": 1}
    correct = {**HALF, "pubmedqa": 1}
    lm_eval_results = {"results": {}, "n-samples": {}}
    for task, n in sizes.items():
        items = [1] * correct[task] + [0] * (n - correct[task])
        local = BENCHMARKS[task].lm_eval_task
        lm_eval_results["results"][local] = {"alias": local, "acc,none": correct[task] / n,
                                             "acc_stderr,none": mean_stderr(items) if n > 1 else "N/A"}
        lm_eval_results["n-samples"][local] = {"original": n, "effective": n}
    summary = summarize(lm_eval_results, list(TASKS), model="m", run_id="run-a", pipeline_check=False,
                        benchmarks="data/benchmarks", settings={"num_fewshot": 0})
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**lm_eval_results, "summary": summary}), encoding="utf-8")
    main([str(path)])
    ours = table((tmp_path / "report.md").read_text(encoding="utf-8"))["**run-a** (ours)"]
    assert ours["PubMedQA"] == "100.0 ± ? ‡ (n=1)"  # one item: no standard error to give, and it says so
    assert ours["MedMCQA"].startswith(f"{100 * HALF['medmcqa'] / 4183:.1f} ± ") and "n=" not in ours["MedMCQA"]
    assert ours["Avg"].endswith("± ?")  # an Avg over a cell without a standard error has none either


def test_several_runs_go_side_by_side_in_one_table_and_one_chart(tmp_path, capsys):
    from eval.report import chart_series, load_run

    stages = {"base": 200, "sft": 250, "dpo": 300}  # PubMedQA items right out of 500
    folders = []
    for stage, right in stages.items():
        folder = tmp_path / f"runs/20260101-{stage}"
        write_results(folder / "eval", scores({**HALF, "pubmedqa": right}), run_id=folder.name)
        folders.append(str(folder))
    main([*folders, "--out", str(tmp_path / "compare.md")])
    rows = table((tmp_path / "compare.md").read_text(encoding="utf-8"))
    ours = [name for name in rows if name.endswith("(ours)")]
    assert ours == [f"**20260101-{stage}** (ours)" for stage in stages]
    assert [rows[name]["PubMedQA"].split(" ±")[0] for name in ours] == ["40.0", "50.0", "60.0"]
    assert (tmp_path / "compare.png").is_file() and "compare.png" in capsys.readouterr().out
    runs = [load_run(Path(f) / "eval/results.json") for f in folders]
    labels = [label for label, _, _ in chart_series(runs, [])]
    assert labels == [f"20260101-{stage} (ours)" for stage in stages]


def test_the_quantized_table_says_how_each_gguf_was_scored_as_its_results_record(tmp_path):
    from eval.report import load_run, quant_lines

    merged = load_run(write_results(tmp_path / "run" / "eval", scores({"pubmedqa": 250})))
    quants = {}
    for quant, backend in (("Q8_0", "llama-cpp"), ("Q4_K_M", "hf")):
        path = write_results(tmp_path / "run" / "eval" / "gguf" / quant, scores({"pubmedqa": 240}))
        data = json.loads(path.read_text())
        data["summary"]["settings"]["backend"] = backend
        path.write_text(json.dumps(data))
        quants[quant] = load_run(path)
    assert "GGUFs scored by llama.cpp itself" in quant_lines(merged, {"Q8_0": quants["Q8_0"]})[-1]
    both = quant_lines(merged, quants)[-1]
    assert "Q8_0 by llama.cpp itself" in both and "Q4_K_M by lm-eval's hf backend" in both
