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
from functools import lru_cache
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from data_prep.decontaminate import row_turns, words
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


def row_words(row: dict[str, Any]) -> tuple[list[bytes], list[bytes]]:
    """``words(row_text(row))`` and ``words(prompt_text(row))``, each turn normalised once.

    ``words`` maps each character on its own after NFKC, and the newline that joins turns is a starter
    that composes with nothing, so the words of joined turns are each turn's words one after the other.
    """
    text: list[bytes] = []
    prompt: list[bytes] = []
    for turn in row_turns(row):
        found = words(turn["content"])
        text += found
        if turn["role"] == "user" and turn is not row.get("chosen") and turn is not row.get("rejected"):
            prompt += found
    return text, prompt


def shingles(text: str) -> set[bytes]:
    """The word 5-grams of normalised text (the whole text when it is shorter)."""
    return word_shingles(words(text))


def word_shingles(tokens: list[bytes]) -> set[bytes]:
    """The 5-grams of normalised words (all of them when there are fewer)."""
    if len(tokens) <= SHINGLE_WORDS:
        return {b" ".join(tokens)}
    return set(map(b" ".join, zip(*(tokens[i:] for i in range(SHINGLE_WORDS)), strict=False)))


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
    return shingle_signatures([shingles(text) for text in texts])


def shingle_signatures(rows: list[set[bytes]]) -> np.ndarray:
    """The MinHash signature of each set of shingles, as a (rows, NUM_PERM) uint32 array."""
    if not rows:
        return np.empty((0, NUM_PERM), dtype=np.uint32)
    hashed, starts = [], []
    for found in rows:
        starts.append(len(hashed))
        hashed += [h.digest()[:4] for h in map(hashlib.sha1, found)]  # datasketch's sha1_hash32
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


def features(rows: list[dict[str, Any]]) -> tuple[list[bytes], np.ndarray, list[list[bytes]]]:
    """For rows: the digests of their normalised texts, their prompts' signatures, and their texts' words."""
    found = [row_words(row) for row in rows]
    digests = [hashlib.sha256(b" ".join(text)).digest() for text, _ in found]
    return digests, shingle_signatures([word_shingles(prompt) for _, prompt in found]), [text for text, _ in found]


def chunk_features(rows: list[dict[str, Any]]) -> tuple[list[bytes], np.ndarray]:
    """``features`` of a chunk, less the words (a worker's answer to ``dedup``)."""
    digests, matrix, _ = features(rows)
    return digests, matrix


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
    digests: list[bytes] = []
    matrix = np.empty((len(entries), NUM_PERM), dtype=np.uint32)
    rows = (e["row"] for e in entries)
    for part_digests, part_signatures in map_chunks(chunk_features, rows, len(entries), workers, label=label):
        matrix[len(digests):len(digests) + len(part_digests)] = part_signatures
        digests += part_digests
    return decide(entries, digests, matrix, near_threshold)


def decide(entries: list[dict[str, Any]], digests: list[bytes], matrix: np.ndarray,
           near_threshold: float = NEAR_THRESHOLD) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``dedup`` given each entry's digest and signature (``features``): kept entries, removed ones."""
    ranges = MinHashLSH(threshold=near_threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS).hashranges
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
