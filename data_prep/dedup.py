"""Remove duplicates, linear in rows: exact copies on normalised text, then near-duplicate prompts (MinHash LSH).

The first occurrence is kept; each later copy is removed with a pointer to the row it repeats.

The MinHash signatures are datasketch's (``MinHash(num_perm=128, seed=1)``, its default affine32
scheme, SHA-1 of each shingle), computed for a whole chunk of rows at once with the permutations
made once: one numpy pass over every shingle of the chunk, a minimum per row. The LSH is
datasketch's banding (``MinHashLSH``'s bands and rows for the threshold and weights): a row's
candidates are the kept rows that agree with it on a whole band, and a candidate is a duplicate when
the signatures' estimated Jaccard similarity reaches the threshold. Rows whose bands' 64-bit hashes
match no other row's, nearly all of them, skip the candidate search, which compares the bands
themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from data_prep.decontaminate import row_text, words
from data_prep.parallel import map_chunks

NEAR_THRESHOLD = 0.8   # estimated Jaccard similarity of prompt shingles
NUM_PERM = 128
SEED = 1
LSH_WEIGHTS = (0.3, 0.7)   # weigh missed near-duplicates over candidates; each candidate's similarity is checked
SHINGLE_WORDS = 5
# MurmurHash3's 32-bit finalizer, which datasketch's affine32 scheme applies to each shingle hash first.
FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


def prompt_text(row: dict[str, Any]) -> str:
    """The user turns of a row: what a model is asked."""
    return "\n".join(m["content"] for m in row["messages"] if m["role"] == "user")


def shingles(text: str) -> set[bytes]:
    """The word 5-grams of normalised text (the whole text when it is shorter)."""
    tokens = words(text)
    return {b" ".join(tokens[i : i + SHINGLE_WORDS]) for i in range(max(1, len(tokens) - SHINGLE_WORDS + 1))}


def minhash(text: str) -> MinHash:
    """datasketch's MinHash of the shingles of ``text``, one row at a time (``signatures`` gives the same values)."""
    signature = MinHash(num_perm=NUM_PERM, seed=SEED)
    signature.update_batch(shingles(text))
    return signature


@lru_cache(maxsize=1)
def permutations() -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutation parameters (a, b) for NUM_PERM and SEED, made once."""
    reference = MinHash(num_perm=NUM_PERM, seed=SEED)
    if reference.scheme != "affine32":
        raise RuntimeError(f"datasketch's default MinHash scheme is {reference.scheme!r}, not affine32")
    a, b = reference.permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def signatures(texts: list[str]) -> np.ndarray:
    """The MinHash signature of each text's shingles, as a (rows, NUM_PERM) uint32 array."""
    hashed, starts = [], []
    for text in texts:
        starts.append(len(hashed))
        hashed += [hashlib.sha1(s).digest()[:4] for s in shingles(text)]  # datasketch's sha1_hash32
    values = np.frombuffer(b"".join(hashed), dtype="<u4").astype(np.uint32)
    s1, m1, s2, m2, s3 = FMIX
    values = values ^ (values >> s1)
    values = values * m1  # uint32 arithmetic on arrays wraps around, as the scheme means it to
    values = values ^ (values >> s2)
    values = values * m2
    values = values ^ (values >> s3)
    a, b = permutations()
    permuted = a[:, None] * values + b[:, None]  # (NUM_PERM, shingles): each row's minimum over contiguous memory
    return np.ascontiguousarray(np.minimum.reduceat(permuted, np.array(starts, dtype=np.intp), axis=1).T)


def features(chunk: list[tuple[str, str]]) -> tuple[list[bytes], np.ndarray]:
    """For (row text, prompt) pairs: the digests of the normalised row texts and the prompts' signatures."""
    digests = [hashlib.sha256(b" ".join(words(text))).digest() for text, _ in chunk]
    return digests, signatures([prompt for _, prompt in chunk])


def band_hashes(matrix: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """One 64-bit hash per row and band (a polynomial over the band's values), (rows, bands)."""
    out = np.zeros((len(matrix), len(ranges)), dtype=np.uint64)
    for band, (start, end) in enumerate(ranges):
        value = np.zeros(len(matrix), dtype=np.uint64)
        for column in range(start, end):
            value = value * np.uint64(0x100000001B3) + matrix[:, column].astype(np.uint64)
        out[:, band] = value
    return out


def banded(hashes: np.ndarray) -> np.ndarray:
    """Whether each row shares some band with another row (only those can have or be candidates)."""
    shared = np.zeros(len(hashes), dtype=bool)
    for band in range(hashes.shape[1]):
        _, inverse, counts = np.unique(hashes[:, band], return_inverse=True, return_counts=True)
        shared |= counts[inverse] > 1
    return shared


def dedup(entries: list[dict[str, Any]], near_threshold: float = NEAR_THRESHOLD, workers: int | None = 1,
          label: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``entries`` ({"row", "origin"}) into kept ones and removed ones with the reason and the original.

    ``label`` names the step in the progress bar."""
    ranges = MinHashLSH(threshold=near_threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS).hashranges
    texts: Iterator[tuple[str, str]] = ((row_text(e["row"]), prompt_text(e["row"])) for e in entries)
    digests: list[bytes] = []
    matrix = np.empty((len(entries), NUM_PERM), dtype=np.uint32)
    for part_digests, part_signatures in map_chunks(features, texts, len(entries), workers, label=label):
        matrix[len(digests):len(digests) + len(part_digests)] = part_signatures
        digests += part_digests
    shared = banded(band_hashes(matrix, ranges))  # a 64-bit hash per band finds the rows worth a closer look

    seen: dict[bytes, int] = {}
    tables: list[dict[bytes, list[int]]] = [{} for _ in ranges]
    kept, removed = [], []
    for position, entry in enumerate(entries):
        digest = digests[position]
        if digest in seen:
            removed.append({**entry, "reason": "exact duplicate", "duplicate_of": entries[seen[digest]]["origin"]})
            continue
        if shared[position]:
            signature = matrix[position]
            bands = [signature[start:end].tobytes() for start, end in ranges]  # exact, as datasketch's keys
            candidates = {k for band, table in zip(bands, tables, strict=True) for k in table.get(band, ())}
            similar = sorted(k for k in candidates
                             if np.count_nonzero(matrix[k] == signature) / NUM_PERM >= near_threshold)
            if similar:
                removed.append({**entry, "reason": "near-duplicate prompt",
                                "duplicate_of": entries[similar[0]]["origin"]})
                continue
            for band, table in zip(bands, tables, strict=True):
                table.setdefault(band, []).append(position)
        seen[digest] = position
        kept.append(entry)
    return kept, removed
