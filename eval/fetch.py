"""Where all nine benchmarks come from: the hub datasets lm-eval's own tasks read, or a folder of raw files.

    python -m eval prepare --all --out data/benchmarks                 # online (HF_HUB_OFFLINE=0), or `make benchmarks`
    python -m eval prepare --all --from RAW_DIR --out data/benchmarks  # offline: the raw files, found by name

Online, each task is read through ``datasets.load_dataset`` (``hub:NAME@REVISION:[CONFIG/]SPLIT``, the
converters' reader) at the revision below; the branch is resolved to its commit first and the manifest
records both. We could not look the commit ids up when this was written (no hub access) and never
guess one, so every revision is ``main`` until a commit id replaces it here; the prepared files'
sha256 in each manifest pins the content meanwhile. Datasets, as lm-eval 0.4.11's task YAMLs:
  medmcqa         medmcqa (now openlifescienceai/medmcqa), validation
  medqa_4options  GBaker/MedQA-USMLE-4-options-hf, test
  mmlu_<subject>  cais/mmlu, config <subject>, test
  pubmedqa        lm-eval reads bigbio/pubmed_qa, a loading script that datasets 4 no longer runs; we read
                  the authors' own copy, qiaojin/PubMedQA pqa_labeled (the 1000 labelled PMIDs), and take
                  the official 500 with the shipped test_ground_truth.json (eval/benchmarks/data/, MIT)
Offline, RAW_DIR (searched recursively) holds the files under their published names: dev.json
(MedMCQA), phrases_no_exclude_test.jsonl (MedQA US 4_options), ori_pqal.json (PubMedQA; the shipped
ground truth picks the test split) and <subject>_test.csv (MMLU ``data/test/``); each may also be
compressed under its published name plus ``.xz`` or ``.gz`` (``dev.json.xz``, as data/published/eval ships them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.files import COMPRESSED
from eval.benchmarks import MMLU_SUBJECTS, BenchmarkError

PUBMEDQA_GROUND_TRUTH = Path(__file__).resolve().parent / "benchmarks/data/pubmedqa_test_ground_truth.json"


@dataclass(frozen=True)
class HubSource:
    """Where one task's rows are on the hub."""

    dataset: str
    split: str
    config: str | None = None
    revision: str = "main"  # a branch until a commit id is known; resolved and recorded at every run
    lm_eval: str = ""  # the dataset lm-eval 0.4.11's task names, when it differs

    def spec(self, revision: str) -> str:
        """The reader's input: ``hub:NAME@REVISION:[CONFIG/]SPLIT``."""
        return f"hub:{self.dataset}@{revision}:{self.config + '/' if self.config else ''}{self.split}"


HUB: dict[str, HubSource] = {
    "medmcqa": HubSource("openlifescienceai/medmcqa", "validation", lm_eval="medmcqa"),
    "medqa_4options": HubSource("GBaker/MedQA-USMLE-4-options-hf", "test"),
    "pubmedqa": HubSource("qiaojin/PubMedQA", "train", "pqa_labeled",
                          lm_eval="bigbio/pubmed_qa pubmed_qa_labeled_fold0_source (a loading script)"),
    **{f"mmlu_{s}": HubSource("cais/mmlu", "test", s) for s in MMLU_SUBJECTS},
}
RAW_FILES: dict[str, tuple[str, ...]] = {
    "medmcqa": ("dev.json",),
    "medqa_4options": ("phrases_no_exclude_test.jsonl",),
    "pubmedqa": ("ori_pqal.json",),
    **{f"mmlu_{s}": (f"{s}_test.csv",) for s in MMLU_SUBJECTS},
}


def resolve_commit(source: HubSource) -> str:
    """The commit ``source.revision`` names now (a local dataset folder has none: its revision stays)."""
    if Path(source.dataset).is_dir():
        return source.revision
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise BenchmarkError("the hub is off (HF_HUB_OFFLINE=1): run with HF_HUB_OFFLINE=0 to download the "
                             "benchmarks, or pass --from RAW_DIR with the raw files")
    from huggingface_hub import HfApi

    return HfApi().dataset_info(source.dataset, revision=source.revision).sha


def hub_inputs(task: str) -> tuple[list[str], dict[str, Any]]:
    """The reader inputs for ``task`` from the hub, and what the manifest records about where they came from."""
    source = HUB[task]
    commit = resolve_commit(source)
    inputs = [source.spec(commit)] + ([str(PUBMEDQA_GROUND_TRUTH)] if task == "pubmedqa" else [])
    record = {"dataset": source.dataset, "config": source.config, "split": source.split,
              "revision": source.revision, "commit": commit, "lm_eval_dataset": source.lm_eval or source.dataset}
    return inputs, record


def find_named(folder: Path, name: str) -> Path | None:
    """The one file under ``folder`` named ``name``, or ``name`` plus a compression suffix; None when absent."""
    matches = sorted(path for candidate in (name, *(name + suffix for suffix in COMPRESSED))
                     for path in folder.rglob(candidate) if path.is_file())
    if len(matches) > 1:
        raise BenchmarkError(f"{folder}: {len(matches)} files named {name} ({', '.join(map(str, matches))}); "
                             "keep one")
    return matches[0] if matches else None


def find_raw(folder: Path, task: str) -> list[str] | None:
    """The raw files for ``task`` under ``folder``, by their published names (compressed or not); None when absent."""
    found = []
    for name in RAW_FILES[task]:
        match = find_named(folder, name)
        if match is None:
            return None
        found.append(str(match))
    if task == "pubmedqa":
        given = sorted(folder.rglob("test_ground_truth.json"))
        found.append(str(given[0]) if given else str(PUBMEDQA_GROUND_TRUTH))
    return found

