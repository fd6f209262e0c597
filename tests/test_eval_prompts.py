"""Our local task YAMLs build exactly the requests upstream lm-eval's tasks build, for all nine benchmarks.

The same documents go to both sides. Upstream's tasks (medmcqa, medqa_4options, pubmedqa, mmlu_<subject>,
loaded from the installed lm_eval package) would download their hub datasets, which cannot happen here
(no network, and bigbio/pubmed_qa's loading script is refused by datasets >= 4): their ``download`` is
replaced by one that returns the fixture documents below, written in each hub dataset's schema. Nothing
else of upstream is changed. Ours get the same documents through ``eval prepare`` (our mapping from the
raw schema), then read them from the prepared file, as in a real run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.benchmarks import TASKS
from eval.lm_eval_tasks import render_tasks
from eval.prepare import prepare

UPSTREAM = Path(__import__("lm_eval").__file__).parent / "tasks"
UPSTREAM_DIRS = [UPSTREAM / "medmcqa", UPSTREAM / "medqa", UPSTREAM / "pubmedqa", UPSTREAM / "mmlu" / "default"]

# Hub schemas: openlifescienceai/medmcqa (cop 0-3), GBaker/MedQA-USMLE-4-options-hf, bigbio/pubmed_qa
# (pubmed_qa_labeled_fold0_source), cais/mmlu. Written for this test; odd whitespace and characters on purpose.
MEDMCQA = [
    {"id": "t-1", "question": "Which nerve supplies the lateral rectus? ", "opa": "Oculomotor", "opb": "Trochlear",
     "opc": "Abducens", "opd": "Facial", "cop": 2, "choice_type": "single", "exp": None,
     "subject_name": "Anatomy", "topic_name": None},
    {"id": "t-2", "question": "Dose of adrenaline (1:1000) in anaphylaxis, in mL IM:", "opa": "0.05",
     "opb": "0.5", "opc": "5", "opd": "50 \u2013 never", "cop": 1, "choice_type": "single", "exp": "",
     "subject_name": "Pharmacology", "topic_name": "ANS"},
    {"id": "t-3", "question": "All are true about {{jinja}}-like text EXCEPT", "opa": "a", "opb": "b", "opc": "c",
     "opd": "d ", "cop": 0, "choice_type": "multi", "exp": None, "subject_name": "Medicine", "topic_name": None},
    {"id": "t-4", "question": "Café-au-lait spots are seen in", "opa": "NF-1", "opb": "Tuberous sclerosis",
     "opc": "Sturge-Weber", "opd": "von Hippel-Lindau", "cop": 3, "choice_type": "single", "exp": None,
     "subject_name": "Dermatology", "topic_name": None},
]
MEDQA_HF = [
    {"id": str(i), "sent1": q, "sent2": "", "ending0": a, "ending1": b, "ending2": c, "ending3": d, "label": label}
    for i, (q, a, b, c, d, label) in enumerate([
        ("A 30-year-old woman has fatigue.\nHer TSH is raised. What is the diagnosis?", "Hypothyroidism",
         "Hyperthyroidism", "Anaemia", "Depression", 0),
        ("A 5-year-old boy has a barking cough. Which organism is most likely?  ", "RSV", "Parainfluenza virus",
         "S. pneumoniae", "H. influenzae", 1),
        ("Which drug reverses heparin?", "Vitamin K", "Idarucizumab", "Protamine sulfate", "Andexanet", 2),
    ])
]
PUBMEDQA = [
    {"QUESTION": "Does drug X lower blood pressure in adults?", "CONTEXTS": ["Background one.", "Results: it did."],
     "LABELS": ["BACKGROUND", "RESULTS"], "MESHES": ["Humans"], "YEAR": "2001", "reasoning_required_pred": "yes",
     "reasoning_free_pred": "yes", "final_decision": "yes", "LONG_ANSWER": "Yes."},
    {"QUESTION": "Is sleep loss linked to falls? ", "CONTEXTS": ["Only one context, with ünïcode."],
     "LABELS": ["METHODS"], "MESHES": [], "YEAR": "2010", "reasoning_required_pred": "no",
     "reasoning_free_pred": "no", "final_decision": "no", "LONG_ANSWER": "No."},
    {"QUESTION": "Can tea prevent colds?", "CONTEXTS": ["A.", "B.", "C.\nwith a line break"],
     "LABELS": ["A", "B", "C"], "MESHES": [], "YEAR": "2015", "reasoning_required_pred": "maybe",
     "reasoning_free_pred": "maybe", "final_decision": "maybe", "LONG_ANSWER": "Maybe."},
]


def mmlu_docs(subject: str) -> list[dict]:
    return [
        {"question": f"  Which is true about {subject.replace('_', ' ')}?\n", "subject": subject,
         "choices": ["First", "Second", "Third", "Fourth"], "answer": 1},
        {"question": "Which value, in mg, is right?", "subject": subject,
         "choices": ["10", "20 ", " 30", "40"], "answer": 3},
    ]


HUB_DOCS = {"medmcqa": MEDMCQA, "medqa_4options": MEDQA_HF, "pubmedqa": PUBMEDQA,
            **{name: mmlu_docs(task.subject) for name, task in TASKS.items() if task.subject}}


def requests(task) -> list[tuple]:
    """Every request of a task: (doc id, choice index, context, continuation), zero-shot, plus the gold index."""
    task.set_config(key="num_fewshot", value=0)
    task.build_all_requests(limit=None, rank=0, world_size=1)
    out = []
    for inst in task.instances:
        choices = task.doc_to_choice(inst.doc)
        target = task.doc_to_target(inst.doc)
        gold = choices.index(target) if isinstance(target, str) else target
        out.append((inst.doc_id, inst.idx, *inst.arguments, gold))
    return out


@pytest.fixture(scope="module")
def upstream_requests() -> dict[str, list[tuple]]:
    """Requests of the nine upstream tasks, their datasets replaced by HUB_DOCS (no download possible here)."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks import TaskManager

    real_download = ConfigurableTask.download

    def fixture_download(self, dataset_kwargs=None, **kwargs):
        if self.config.dataset_path == "json":  # our local tasks read their prepared file as usual
            return real_download(self, dataset_kwargs, **kwargs)
        docs = datasets.Dataset.from_list(HUB_DOCS[self.config.task])
        self.dataset = datasets.DatasetDict({s: docs for s in ("train", "validation", "test", "dev")})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ConfigurableTask, "download", fixture_download)
        manager = TaskManager(include_path=[str(d) for d in UPSTREAM_DIRS], include_defaults=False)
        tasks = manager.load_task_or_group(list(TASKS))
    return {name: requests(tasks[name]) for name in TASKS}


@pytest.fixture(scope="module")
def local_requests(tmp_path_factory) -> dict[str, list[tuple]]:
    """Requests of our nine tasks, on HUB_DOCS run through ``eval prepare``."""
    from lm_eval.tasks import TaskManager

    tmp = tmp_path_factory.mktemp("prompts")
    for name, docs in HUB_DOCS.items():
        raw = tmp / "raw" / f"{name}.jsonl"
        raw.parent.mkdir(exist_ok=True)
        raw.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
        prepare(TASKS[name], [str(raw)], tmp / "benchmarks", allow_partial=True)
    tasks_dir = render_tasks(tmp / "benchmarks", tmp / "tasks", list(TASKS))
    manager = TaskManager(include_path=str(tasks_dir), include_defaults=False)
    tasks = manager.load_task_or_group([TASKS[n].lm_eval_task for n in TASKS])
    return {name: requests(tasks[TASKS[name].lm_eval_task]) for name in TASKS}


@pytest.mark.parametrize("name", list(TASKS))
def test_local_task_builds_the_same_requests_as_upstream(name, upstream_requests, local_requests):
    ours, theirs = local_requests[name], upstream_requests[name]
    choices = 3 if name == "pubmedqa" else 4
    assert len(theirs) == len(HUB_DOCS[name]) * choices  # one loglikelihood request per document and choice
    assert ours == theirs


def test_mmlu_prompt_carries_the_subject_description_and_strips_the_question(local_requests):
    context = local_requests["mmlu_medical_genetics"][0][2]
    assert context.startswith("The following are multiple choice questions (with answers) about medical genetics."
                              "\n\nWhich is true about medical genetics?\nA. First\n")


def test_local_task_names_do_not_collide_with_upstream_names():
    from lm_eval.tasks import TaskManager

    upstream = set(TaskManager(include_path=[str(d) for d in UPSTREAM_DIRS], include_defaults=False).all_tasks)
    ours = {task.lm_eval_task for task in TASKS.values()}
    assert set(TASKS) <= upstream  # the canonical names are upstream's
    assert not ours & upstream
