"""Near dedup as a map-reduce: MinHash signatures per bucket -> LSH band edges -> union-find clusters.

A file is the set of its word 5-grams (words = runs of [A-Za-z_0-9], as the original's split on
`[^A-Za-z_0-9]`). Tokens and shingles are hashed with numpy over whole batches of files (no
Python loop per token); MinHash itself is rensa's (Rust). Band/row split: the one minimising the
sum of false-positive and false-negative areas of the LSH S-curve around the threshold (BigCode).
"""

from collections import Counter
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from codeparrot.atomic import atomic_output
from codeparrot.arrow import read_parquet
from codeparrot.clean.doc_id import decode_doc_ids, encode_doc_ids
from codeparrot.clean.stats import write_stats

_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD_BYTE[_c] = True
_BASE = 0x100000001B3  # odd, so invertible mod 2**64
_BASE_INV = pow(0x100000001B3, -1, 2**64)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads polynomial hashes over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: int, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) mod 2**64, cached per process. Built by doubling
    (powers[L:2L] = powers[:L] * base**L, vectorised) instead of a sequential cumprod."""
    cached = _POWERS.get(base)
    if cached is None or len(cached) < n:
        size = max(n + n // 4, 1 << 16)
        powers = np.empty(size, dtype=np.uint64)
        powers[0], length = 1, 1
        with np.errstate(over="ignore"):
            while length < size:
                step = min(length, size - length)
                np.multiply(powers[:step], np.uint64(pow(base, length, 2**64)), out=powers[length:length + step])
                length += step
        _POWERS[base] = cached = powers
    return cached[:n]


def word_hashes(contents: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hash of every word of every file, and each file's offset into them.

    Polynomial hash from one prefix sum over the whole batch: with P[i] = sum_{j<i} b[j]·B^j,
    (P[end] - P[start])·B^-start = sum_j b[j]·B^(j-start) depends only on the word's bytes.
    """
    data = [c.encode("utf-8", "surrogatepass") for c in contents]
    buf = np.frombuffer(b"\n".join(data) + b"\n", dtype=np.uint8)
    n = len(buf)
    is_word = _WORD_BYTE[buf]
    edges = np.diff(is_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    with np.errstate(over="ignore"):
        prefix = np.empty(n + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(buf * _powers(_BASE, n), dtype=np.uint64, out=prefix[1:])
        hashes = _mix((prefix[ends] - prefix[starts]) * _powers(_BASE_INV, n)[starts])
    file_ends = np.cumsum([len(d) + 1 for d in data])
    offsets = np.r_[0, np.searchsorted(starts, file_ends)]
    return hashes, offsets


def shingle_hashes(contents: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of the word n-grams of each file (flat), per-file offsets, and word counts."""
    words, offsets = word_hashes(contents)
    counts = np.diff(offsets)
    n = len(words) - ngram + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(len(contents) + 1, dtype=np.uint64), counts
    with np.errstate(over="ignore"):
        shingles = np.zeros(n, dtype=np.uint64)
        for k in range(ngram):
            shingles = shingles * _MIX + words[k:k + n]
        shingles = _mix(shingles)
    # Keep the n-grams that lie inside one file: start s of file f needs s + ngram <= offsets[f+1].
    per_file = np.maximum(counts - ngram + 1, 0)
    keep = np.zeros(n, dtype=bool)
    starts = offsets[:-1]
    idx = np.repeat(starts, per_file) + (np.arange(per_file.sum())
                                         - np.repeat(np.cumsum(per_file) - per_file, per_file))
    keep[idx] = True
    return shingles[keep], np.r_[0, np.cumsum(per_file)].astype(np.uint64), counts


def minhash_signatures(contents: list[str], ngram: int, num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(signatures uint32 [files, num_perm], word counts). Files with fewer words than
    `ngram` use their whole word sequence as one shingle, so every file gets a signature."""
    shingles, offsets, counts = shingle_hashes(contents, ngram)
    if len(contents) == 0:
        return np.zeros((0, num_perm), dtype=np.uint32), counts
    short = np.flatnonzero(np.diff(offsets) == 0)
    if len(short):  # too short for one n-gram: one shingle for the whole file, inserted in place
        whole = np.array([hash_bytes(contents[i]) for i in short], dtype=np.uint64)
        shingles = np.insert(shingles, offsets[short].astype(np.int64), whole)
        sizes = np.diff(offsets).astype(np.int64)
        sizes[short] = 1
        offsets = np.r_[0, np.cumsum(sizes)].astype(np.uint64)
    import rensa  # only the signature jobs need it

    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(shingles, offsets, num_perm, seed)
    return np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(contents), num_perm), counts


def hash_bytes(text: str) -> int:
    import hashlib
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


@lru_cache
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising weighted FP + FN areas (BigCode)."""
    s = np.linspace(0, 1, 1001)
    best, best_error = (1, 1), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1 - (1 - s**r) ** b
            fp = np.trapezoid(np.where(s <= threshold, p, 0), s)
            fn = np.trapezoid(np.where(s >= threshold, 1 - p, 0), s)
            error = fp_weight * fp + fn_weight * fn
            if error < best_error - 1e-12:
                best, best_error = (b, r), error
    return best


def lsh_bands(near_dedup: dict) -> tuple[int, int]:
    """(bands, rows) for the `clean.near_dedup` config section: false negatives weigh
    `false_negative_weight`, false positives the rest."""
    weight = near_dedup["false_negative_weight"]
    return optimal_bands(near_dedup["threshold"], near_dedup["num_perm"], 1 - weight, weight)


def band_hashes(signatures: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """uint64 [files, bands]: one hash per band of `rows` signature values."""
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    sig = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    with np.errstate(over="ignore"):
        return _mix((sig * weights).sum(axis=2, dtype=np.uint64))


def bucket_signatures(
    filtered_path: str, bucket: int, out_path: str, stats_path: str, ngram: int, num_perm: int, bands: int, rows: int,
    min_words: int, seed: int, batch_bytes: int = 4 << 20,
) -> dict:
    """Map: band hashes of every file of one bucket with at least `min_words` words."""
    table = read_parquet(filtered_path, columns=["content", "repo_name", "path"])
    ids, band_parts, skipped = [], [], 0
    sizes = pc.binary_length(table["content"]).to_numpy()
    # Batches of about batch_bytes bound the memory of the vectorised hashing.
    cuts = np.r_[0, np.flatnonzero(np.diff(np.cumsum(sizes) // batch_bytes)) + 1, table.num_rows]
    for start, end in tqdm(list(zip(cuts[:-1], cuts[1:])), desc=f"minhash bucket {bucket}", mininterval=5):
        contents = table["content"].slice(start, end - start).to_pylist()
        signatures, counts = minhash_signatures(contents, ngram, num_perm, seed)
        eligible = counts >= min_words
        skipped += int((~eligible).sum())
        ids.append(encode_doc_ids(bucket, start + np.flatnonzero(eligible)))
        band_parts.append(band_hashes(signatures[eligible], bands, rows, seed))
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.uint64)
    all_bands = np.concatenate(band_parts) if band_parts else np.zeros((0, bands), dtype=np.uint64)
    _, rows_taken = decode_doc_ids(all_ids)
    columns = {"id": all_ids, "repo_name": table["repo_name"].take(rows_taken), "path": table["path"].take(rows_taken)}
    columns.update({f"band_{j:03d}": all_bands[:, j] for j in range(bands)})
    with atomic_output(out_path) as tmp:
        pq.write_table(pa.table(columns), tmp)
    stats = {"bucket": bucket, "files": table.num_rows, "signed": len(all_ids), "skipped_short": skipped,
             "bands": bands, "rows": rows}
    write_stats(stats_path, stats)
    return stats


def band_groups(bands: int, jobs: int) -> list[list[int]]:
    """Bands handled by each band job (job g takes bands g, g + jobs, ...)."""
    jobs = max(1, min(jobs, bands))
    return [list(range(g, bands, jobs)) for g in range(jobs)]


def band_edges(signature_paths: list[str], bands: list[int], out_path: str) -> int:
    """Reduce per band: files whose band hashes collide become edges to the group's smallest id.
    Memory: two uint64 columns of all files, one band at a time."""
    sources, targets = [], []
    for band in bands:
        column = f"band_{band:03d}"
        tables = [read_parquet(p, columns=["id", column]) for p in signature_paths]
        ids = np.concatenate([t["id"].to_numpy() for t in tables] or [np.zeros(0, np.uint64)])
        keys = np.concatenate([t[column].to_numpy() for t in tables] or [np.zeros(0, np.uint64)])
        order = np.lexsort((ids, keys))
        ids, keys = ids[order], keys[order]
        new_group = np.r_[True, keys[1:] != keys[:-1]]
        group_first = ids[np.maximum.accumulate(np.where(new_group, np.arange(len(ids)), 0))]
        sources.append(ids[~new_group])
        targets.append(group_first[~new_group])
    edges = np.unique(np.stack([np.concatenate(sources or [np.zeros(0, np.uint64)]),
                                np.concatenate(targets or [np.zeros(0, np.uint64)])], axis=1), axis=0)
    with atomic_output(out_path) as tmp:
        pq.write_table(pa.table({"src": edges[:, 0], "dst": edges[:, 1]}), tmp)
    return len(edges)


def find(parent: dict, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


def union_find(edges: np.ndarray) -> dict:
    """Connected components of an edge list; the result does not depend on edge order."""
    parent = {}
    for a, b in edges.tolist():
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(parent, a), find(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(parent, x) for x in parent}


def cluster_duplicates(edge_paths: list[str], signature_paths: list[str], out_path: str, stats_path: str) -> dict:
    """Union-find over all band edges; each cluster keeps its smallest (repo_name, path)."""
    tables = [read_parquet(p) for p in edge_paths]
    edges = np.concatenate([np.stack([t["src"].to_numpy(), t["dst"].to_numpy()], axis=1) for t in tables] or
                           [np.zeros((0, 2), np.uint64)]).astype(np.uint64)
    edges = np.unique(edges, axis=0) if len(edges) else edges
    root = union_find(edges)
    members = np.array(sorted(root), dtype=np.uint64)
    names = {}
    for path in signature_paths:
        table = read_parquet(path, columns=["id", "repo_name", "path"])
        table = table.filter(pc.is_in(table["id"], pa.array(members, pa.uint64())))
        for i, repo, p in zip(table["id"].to_pylist(), table["repo_name"].to_pylist(), table["path"].to_pylist()):
            names[i] = (repo, p)
    groups: dict[int, list[int]] = {}
    for x in members.tolist():
        groups.setdefault(root[x], []).append(x)
    rows = {"cluster": [], "id": [], "repo_name": [], "path": [], "keep": [], "size": []}
    for group in groups.values():
        ordered = sorted(group, key=lambda i: (names[i], i))
        keeper = ordered[0]
        for i in ordered:
            for name, value in (("cluster", keeper), ("id", i), ("repo_name", names[i][0]), ("path", names[i][1]),
                                ("keep", i == keeper), ("size", len(group))):
                rows[name].append(value)
    rows["bucket"] = decode_doc_ids(np.array(rows["id"], dtype=np.uint64))[0]
    schema = pa.schema([("cluster", pa.uint64()), ("id", pa.uint64()), ("bucket", pa.int64()),
                        ("repo_name", pa.string()), ("path", pa.string()), ("keep", pa.bool_()),
                        ("size", pa.int64())])
    table = pa.table(rows, schema=schema)
    table = table.take(pc.sort_indices(table, [("bucket", "ascending"), ("cluster", "ascending"), ("id", "ascending")]))
    with atomic_output(out_path) as tmp:
        pq.write_table(table, tmp)
    sizes = Counter(len(g) for g in groups.values())
    stats = {"clusters": len(groups), "files_in_clusters": len(members), "removed": len(members) - len(groups),
             "candidate_edges": int(len(edges)), "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())}}
    write_stats(stats_path, stats)
    return stats
