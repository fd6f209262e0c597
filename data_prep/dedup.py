"""Remove duplicates, linear in rows: exact copies on normalised text, then near-duplicate prompts (MinHash LSH).

The first occurrence is kept; each later copy is removed with a pointer to the row it repeats.
"""

from __future__ import annotations

import hashlib
from typing import Any

from datasketch import MinHash, MinHashLSH

from data_prep.decontaminate import normalize, row_text

NEAR_THRESHOLD = 0.8   # estimated Jaccard similarity of prompt shingles
NUM_PERM = 128
LSH_WEIGHTS = (0.3, 0.7)   # weigh missed near-duplicates over candidates; each candidate's similarity is checked
SHINGLE_WORDS = 5


def prompt_text(row: dict[str, Any]) -> str:
    """The user turns of a row: what a model is asked."""
    return "\n".join(m["content"] for m in row["messages"] if m["role"] == "user")


def minhash(text: str) -> MinHash:
    """MinHash of the word 5-gram shingles of normalised text."""
    words = normalize(text).split()
    shingles = {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))}
    signature = MinHash(num_perm=NUM_PERM, seed=1)
    signature.update_batch([s.encode() for s in shingles])
    return signature


def dedup(entries: list[dict[str, Any]], near_threshold: float = NEAR_THRESHOLD
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``entries`` ({"row", "origin"}) into kept ones and removed ones with the reason and the original."""
    seen: dict[str, dict[str, Any]] = {}
    lsh = MinHashLSH(threshold=near_threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
    indexed: dict[str, tuple[MinHash, dict[str, Any]]] = {}
    kept, removed = [], []
    for position, entry in enumerate(entries):
        exact = hashlib.sha256(normalize(row_text(entry["row"])).encode()).hexdigest()
        if exact in seen:
            removed.append({**entry, "reason": "exact duplicate", "duplicate_of": seen[exact]["origin"]})
            continue
        signature = minhash(prompt_text(entry["row"]))
        similar = sorted(k for k in lsh.query(signature) if signature.jaccard(indexed[k][0]) >= near_threshold)
        if similar:
            removed.append({**entry, "reason": "near-duplicate prompt", "duplicate_of": indexed[similar[0]][1]})
            continue
        key = f"{position:012d}"
        seen[exact] = entry
        indexed[key] = (signature, entry["origin"])
        lsh.insert(key, signature)
        kept.append(entry)
    return kept, removed
