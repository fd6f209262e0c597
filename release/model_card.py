"""The release's ``README.md``: a hub model card written from the runs' manifests and eval results.

Front matter (base_model, license, language, tags, datasets, pipeline_tag, model-index) through huggingface_hub's
``ModelCardData``; ``model-index`` holds one entry per benchmark scored on a real test set, none for a PIPELINE
CHECK (results on the bundled fixtures). The body: results beside the published card's rows, usage with every
terminator, training procedure (hyperparameters marked ``card``/``ours`` from the recipe's comments), data,
loss curves, framework versions and the advisory notice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.files import sha256_file
from eval.fetch import HUB
from eval.generation_check import percent
from eval.published import TASKS, load_published
from eval.report import Z95, ScoredRun, base_lines, generation_lines, load_run, our_cells, quant_lines, size_words
from inference.card_usage import MAX_NEW_TOKENS, SYSTEM_PROMPT

TRAINING_KEYS = ("rl", "rl_beta", "learning_rate", "lr_scheduler", "warmup_steps", "micro_batch_size",
                 "gradient_accumulation_steps", "num_epochs", "max_steps", "optimizer", "weight_decay",
                 "max_grad_norm", "sequence_len", "sample_packing", "seed", "bf16")
PEFT_KEYS = ("adapter", "load_in_4bit", "lora_r", "lora_alpha", "lora_dropout", "lora_target_linear",
             "lora_target_modules")
LICENSES = {"meta-llama/Meta-Llama-3": "llama3", "meta-llama/Llama-3.1": "llama3.1",
            "HuggingFaceTB/SmolLM2": "apache-2.0"}  # base model id prefix -> the hub's license id
MARK = re.compile(r"^([A-Za-z_]\w*):[^#]*#\s*(card|ours)\b[\s:]*(.*)$")  # a top-level key's `# card: ...` comment
ADVISORY = (
    "**Research use only; not for patient care.** This model is a research artefact. Its answers can be wrong, "
    "out of date or biased, and it has not been validated in clinical studies or real healthcare settings. Do "
    "not use it to diagnose, treat or advise patients, or to support any clinical decision. Use it to study "
    "methods, with people who understand its limits; anyone with a health question should ask a qualified "
    "clinician.")


@dataclass
class Stage:
    """One training run behind the release: its folder and manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest.get("stage", "?"))


def base_model_id(stages: list[Stage]) -> str:
    """The hub id of the model the first stage started from (a local copy's recorded source)."""
    record = stages[0].manifest.get("base_model") or {}
    source = record.get("source") or {}
    return str(source.get("model") if record.get("local") and source.get("model") else record.get("id", "unknown"))


def license_of(base: str) -> str:
    return next((lic for prefix, lic in LICENSES.items() if base.startswith(prefix)), "other")


def recipe_marks(stage: Stage, root: Path) -> dict[str, tuple[str, str]] | None:
    """``key -> ("card"|"ours", reason)`` from the recipe's line comments; None when the file is gone or changed."""
    recipe = stage.manifest.get("recipe") or {}
    path = root / str(recipe.get("path", ""))
    if not path.is_file() or sha256_file(path) != recipe.get("sha256"):
        return None
    marks = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := MARK.match(line):
            marks[match[1]] = (match[2], match[3].strip().removeprefix("(").removesuffix(")"))
    return marks


def hyperparameters(stage: Stage, marks: dict[str, tuple[str, str]] | None) -> list[str]:
    """Markdown lines: the stage's training and PEFT values from its resolved config, each with its mark."""
    config = stage.manifest.get("config") or {}
    lines = []
    for title, keys in (("Training", TRAINING_KEYS), ("PEFT", PEFT_KEYS)):
        lines += [f"**{title}**", ""]
        for key in keys:
            if key not in config:
                continue
            value = ", ".join(map(str, config[key])) if isinstance(config[key], list) else config[key]
            kind, why = (marks or {}).get(key, ("", ""))
            lines.append(f"- {key}: {value}" + (f" ({kind}{': ' + why if why else ''})" if kind else ""))
        lines.append("")
    if marks is None:
        lines += ["(The recipe file is not here or changed since the run: values are unmarked.)", ""]
    return lines


def datasets_of(stages: list[Stage]) -> list[str]:
    """Front-matter dataset names: each training file's mixture, as ``<name>-v<version>``, else the file name."""
    names = []
    for stage in stages:
        for entry in stage.manifest.get("datasets") or []:
            mixture = (entry.get("data_manifest") or {}).get("mixture") or {}
            names.append(f"{mixture['name']}-v{mixture.get('version', 1)}" if mixture.get("name")
                         else Path(str(entry.get("path"))).name)
    return list(dict.fromkeys(names))


def eval_results(run: ScoredRun | None) -> list[Any]:
    """huggingface_hub ``EvalResult`` per benchmark scored on a real test set; none for a pipeline check."""
    from huggingface_hub import EvalResult

    if run is None or run.summary.get("pipeline_check") is not False:
        return []
    return [EvalResult(task_type="text-generation", dataset_type=HUB[task].dataset, dataset_name=TASKS[task][0],
                       dataset_config=HUB[task].config, dataset_split=HUB[task].split, metric_type="accuracy",
                       metric_value=round(100 * score.acc, 2), metric_name=f"accuracy (n={score.n})")
            for task, score in run.scores.items()]


def results_lines(run: ScoredRun | None) -> list[str]:
    """The results section: our row beside the published card's rows, the pipeline-check label, generation check."""
    if run is None:
        return ["No eval results: this run was not evaluated (`make eval RUN=runs/<id>`).", ""]
    lines = []
    if run.summary.get("pipeline_check") is not False:
        lines += ["> **PIPELINE CHECK, not a benchmark.** These figures come from the few bundled fixture items, "
                  "not the benchmarks' test sets: they show the evaluation runs end to end and say nothing about the "
                  "model. They are left out of the card's metadata.", ""]
    _, published = load_published()
    lines += ["| model | " + " | ".join(label for label, _ in TASKS.values()) + " | Avg |",
              "| --- " * (len(TASKS) + 2) + "|",
              f"| **{run.name}** (this model) | " + " | ".join(our_cells(run)) + " |"]
    lines += [f"| {row.name} (published card) | " + " | ".join(row.cells.values()) + f" | {row.avg} |"
              for row in published]
    lines += ["", f"Accuracy (%), zero-shot, lm-eval; ours ± the 95% interval ({Z95} * standard error), (n=…) where "
              "scored on fewer items than the full test set. Published rows as printed on the OpenBioLLM cards "
              "(Med-PaLM rows 5-shot).", ""]
    if run.versus:  # results.json's summary.versus_base (eval/versus_base.py)
        lines += [*base_lines(run, "###"), ""]
    if run.generation:  # results.json's generation_check (eval/generation_check.py)
        lines += ["**Generation check**: greedy answers, how often they stop on their own, their length, "
                  "repetition and leaked template tokens.", *generation_lines(run), ""]
    return lines


def gguf_lines(ggufs: list[dict[str, Any]], merged: ScoredRun | None, scored: dict[str, ScoredRun]) -> list[str]:
    """The GGUF section: each file (type, size, sha256, llama.cpp's stop rate), merged beside the scored ones."""
    if not ggufs:
        return []
    lines = ["## Quantized versions (GGUF)", "",
             "Made by llama.cpp's own `convert_hf_to_gguf.py` (F16) and `llama_model_quantize` (from the F16 file), "
             "as pinned by openbiollm-recipes. Each file carries the chat template, the eos id and the end-of-turn "
             "id, checked by reading them back. Stop rate: the generation check's greedy answers through llama.cpp "
             "that ended on a terminator.", "",
             "| file | type | size | sha256 | stop rate (llama.cpp) |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| `gguf/{g['file']}` | {g['quant']} | {size_words(g['size'])} | `{g['sha256'][:16]}…` | "
              f"{percent(g['generation_check']['stop_rate']) if g.get('generation_check') else '-'} |" for g in ggufs]
    if merged is not None and scored:
        lines += ["", "**Merged vs quantized**", "", *quant_lines(merged, scored)]
    example = ggufs[-1]["file"]
    return [*lines, "", "With llama.cpp (it stops on the end-of-turn token itself):", "", "```sh",
            f"llama-cli -m gguf/{example} -cnv --temp 0 -sys {json.dumps(SYSTEM_PROMPT)}", "```", ""]


def usage_lines(repo_id: str, end_tokens: list[str]) -> list[str]:
    """The card's transformers snippet, greedy (the card's "temperature = 0"), stopping on every terminator:
    the eos and the chat template's end-of-turn tokens (``<|eot_id|>`` for Llama-3, ``<|im_end|>`` for ChatML)."""
    return ["```python", "import transformers", "import torch", "", f'model_id = "{repo_id}"', "",
            "pipeline = transformers.pipeline(", '    "text-generation",', "    model=model_id,",
            '    model_kwargs={"torch_dtype": torch.bfloat16},', '    device_map="auto",', ")", "",
            "messages = [", f"    {{\"role\": \"system\", \"content\": {json.dumps(SYSTEM_PROMPT)}}},",
            '    {"role": "user", "content": "How long does it take for newborn jaundice to go away?"},', "]", "",
            "prompt = pipeline.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
            "", "terminators = [", "    pipeline.tokenizer.eos_token_id,",
            *[f"    pipeline.tokenizer.convert_tokens_to_ids({json.dumps(token)})," for token in end_tokens], "]", "",
            f"outputs = pipeline(prompt, max_new_tokens={MAX_NEW_TOKENS}, eos_token_id=terminators, do_sample=False)",
            'print(outputs[0]["generated_text"][len(prompt):])', "```"]


def render_card(name: str, stages: list[Stage], results_path: Path | None, images: dict[str, str], root: Path,
                end_tokens: list[str], repo_id: str | None = None, ggufs: list[dict[str, Any]] | None = None,
                quant_runs: dict[str, ScoredRun] | None = None) -> str:
    """The card's markdown: ``stages`` in training order (SFT, then DPO), the last one released; ``end_tokens``:
    the chat template's end-of-turn tokens (inference/terminators.py), which the usage snippet stops on; ``ggufs``:
    release.json's GGUF records, ``quant_runs`` their scored results by type."""
    from huggingface_hub import ModelCard, ModelCardData

    run = load_run(results_path) if results_path else None
    base, last = base_model_id(stages), stages[-1]
    data = ModelCardData(base_model=base, license=license_of(base), language=["en"], pipeline_tag="text-generation",
                         library_name="transformers", datasets=datasets_of(stages), model_name=name,
                         tags=["medical", "biomedical", "openbiollm-recipes", *[s.name for s in stages], "qlora"],
                         eval_results=eval_results(run) or None)
    repo_id = repo_id or f"ORG/{name}"
    out = [f"# {name}", "", f"> {ADVISORY}", "",
           f"{name} is [{base}](https://huggingface.co/{base}) fine-tuned with openbiollm-recipes, following the "
           f"OpenBioLLM recipe: {' then '.join(s.name.upper() for s in stages)}, QLoRA adapters merged into the "
           f"weights. Run `{last.path.name}` (recipe `{(last.manifest.get('recipe') or {}).get('path')}`, code "
           f"`{(last.manifest.get('code') or {}).get('commit')}`).", "", "## Results", "", *results_lines(run),
           "## Usage", "", "Use the tokenizer's own chat template. `generation_config.json` stops on every "
           "terminator (the eos and the end-of-turn token) and decodes greedily; the snippet (the OpenBioLLM card's) "
           "passes the terminators too, and asks for greedy decoding with `do_sample=False`: the card's "
           "`do_sample=True, temperature=0.0` is refused by current transformers.", "",
           *usage_lines(repo_id, end_tokens), "", *gguf_lines(ggufs or [], run, quant_runs or {}),
           "## Training procedure", ""]
    for stage in stages:
        out += [f"### {stage.name.upper()}: `{stage.path.name}`", "",
                "Values from the resolved recipe; (card) as the OpenBioLLM card states, (ours) our choice, "
                "with the reason.", "", *hyperparameters(stage, recipe_marks(stage, root)),
                "**Data**", "", "| file | rows | sha256 |", "| --- | --- | --- |"]
        out += [f"| `{d.get('path')}` | {d.get('rows')} | `{d.get('sha256')}` |"
                for d in stage.manifest.get("datasets") or []]
        out.append("")
        if stage.name in images:
            out += [f"![{stage.name} loss]({images[stage.name]})", ""]
    packages = last.manifest.get("packages") or {}
    out += ["### Framework versions", "", f"- Python {last.manifest.get('python')}",
            *[f"- {k} {v}" for k, v in packages.items()], "", "## Advisory notice", "", ADVISORY, ""]
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}\n",
                                   body="\n".join(out)).content
