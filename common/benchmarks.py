"""The names of the nine benchmarks: the contract between eval, which prepares them, and data_prep, which checks
training rows against them.

    python -m eval prepare --all --out data/benchmarks   # writes <name>.jsonl for each name here
    python -m data_prep decontaminate IN --benchmarks data/benchmarks --out OUT

Only the names live here, as data; each benchmark's schema, split and row count stay in eval/benchmarks (the
registry), which checks at import that it defines exactly these names, in this order.
"""

MMLU_SUBJECTS = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                 "professional_medicine")
BENCHMARKS = ("medmcqa", "medqa_4options", "pubmedqa", *(f"mmlu_{subject}" for subject in MMLU_SUBJECTS))
