"""Near dedup on real files with injected near duplicates: recall and precision against exact Jaccard."""

import itertools
import random
import re
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeparrot.clean.doc_id import decode_doc_ids, encode_doc_ids
from codeparrot.clean.near_dedup import (
    band_edges, band_groups, bucket_signatures, cluster_duplicates, lsh_bands, minhash_signatures, optimal_bands,
    union_find, word_hashes,
)

THRESHOLD, NGRAM, NUM_PERM = 0.85, 5, 256
KEYWORDS = {"self", "return", "import", "from", "def", "class", "None", "True", "False", "else", "elif", "for",
            "while", "with", "pass", "raise", "not", "and", "the", "str", "int", "len"}


def shingles(content: str) -> set:
    words = [w for w in re.split(r"[^A-Za-z_0-9]", content) if w]
    return {tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def rename_variable(content: str, rng: random.Random) -> str:
    words = Counter(w for w in re.findall(r"\b[a-z_][a-z_0-9]{3,}\b", content) if w not in KEYWORDS)
    candidates = [w for w, n in words.most_common(40) if 1 <= n <= 6]
    if not candidates:
        return content + "\n# renamed nothing\n"
    name = rng.choice(candidates)
    return re.sub(rf"\b{name}\b", name + "_renamed", content)


def change_comments(content: str, rng: random.Random) -> str:
    lines = content.splitlines()
    for i in sorted(rng.sample(range(len(lines)), k=min(3, len(lines)))):
        lines[i] += "  # reviewed"
    return "\n".join(lines) + "\n"


def reindent(content: str, rng: random.Random) -> str:
    return content.replace("    ", "  ")


@pytest.fixture(scope="module")
def corpus():
    site = Path(sysconfig.get_paths()["purelib"])
    files = []
    for package in ("jsonschema", "click", "yaml", "tqdm", "rich"):
        files += [p for p in sorted((site / package).rglob("*.py")) if 2048 <= p.stat().st_size <= 60_000]
    rng = random.Random(0)
    originals = [(f"pypi/{p.parent.name}", str(p.relative_to(site)), p.read_text()) for p in files[:160]]
    docs = list(originals)
    for i, (_repo, path, content) in enumerate(originals[:60]):
        edit = (rename_variable, change_comments, reindent)[i % 3]
        variant = edit(content, rng)
        if i % 4 == 0:
            variant = change_comments(variant, rng)
        docs.append((f"zz/copy{i}", path, variant))
    return docs


def run_near_dedup(docs, tmp_path, buckets):
    """Rows dealt to buckets as the clean stage would, then signatures -> band edges -> clusters."""
    bands, rows = optimal_bands(THRESHOLD, NUM_PERM)
    signature_paths = []
    for b in range(buckets):
        part = docs[b::buckets]
        filtered = tmp_path / f"filtered-{b}.parquet"
        pq.write_table(pa.table({"repo_name": [d[0] for d in part], "path": [d[1] for d in part],
                                 "content": [d[2] for d in part]}), filtered)
        signature_paths.append(str(tmp_path / f"sig-{b}.parquet"))
        bucket_signatures(str(filtered), b, signature_paths[-1], str(tmp_path / f"sig-{b}.json"), NGRAM, NUM_PERM,
                          bands, rows, min_words=10, seed=1, batch_bytes=64 << 10)
    edges = []
    for g, group in enumerate(band_groups(bands, 3)):
        edges.append(str(tmp_path / f"edges-{g}.parquet"))
        band_edges(signature_paths, group, edges[-1])
    stats = cluster_duplicates(edges, signature_paths, str(tmp_path / "clusters.parquet"), str(tmp_path / "c.json"))
    clusters = pq.read_table(tmp_path / "clusters.parquet").to_pylist()
    return clusters, stats


def pairs_by_cluster(clusters):
    groups = {}
    for row in clusters:
        groups.setdefault(row["cluster"], []).append((row["repo_name"], row["path"]))
    return {frozenset(p) for g in groups.values() for p in itertools.combinations(sorted(g), 2)}


def similar_pairs(corpus) -> set:
    """Pairs with exact Jaccard >= THRESHOLD (J <= min/max of the set sizes prunes most pairs exactly)."""
    sets = [shingles(d[2]) for d in corpus]
    names = [(d[0], d[1]) for d in corpus]
    return {frozenset((names[i], names[j])) for i, j in itertools.combinations(range(len(corpus)), 2)
            if sets[i] and sets[j] and min(len(sets[i]), len(sets[j])) >= THRESHOLD * max(len(sets[i]), len(sets[j]))
            and jaccard(sets[i], sets[j]) >= THRESHOLD}


def test_recall_and_precision_against_exact_jaccard(corpus, tmp_path):
    true = similar_pairs(corpus)
    clusters, stats = run_near_dedup(corpus, tmp_path, buckets=3)
    found = pairs_by_cluster(clusters)
    recall = len(found & true) / len(true)
    pair_precision = len(found & true) / len(found)
    # A removed file is justified when it has a true near duplicate in its cluster (clusters are
    # transitive, so pairs at the far ends of a chain can be below the threshold).
    members = {}
    for row in clusters:
        members.setdefault(row["cluster"], []).append((row["repo_name"], row["path"]))
    removed = [((r["repo_name"], r["path"]), members[r["cluster"]]) for r in clusters if not r["keep"]]
    justified = sum(any(frozenset((name, other)) in true for other in group if other != name)
                    for name, group in removed)
    removal_precision = justified / len(removed)
    print(f"near dedup: {len(true)} true pairs, {len(found)} pairs clustered, recall {recall:.3f}, "
          f"pair precision {pair_precision:.3f}, removal precision {removal_precision:.3f}")
    assert len(true) >= 40  # the injected copies above the threshold
    assert recall >= 0.9
    assert removal_precision >= 0.9
    # One representative per cluster: the smallest (repo_name, path).
    keepers = [r for r in clusters if r["keep"]]
    assert len(keepers) == stats["clusters"] and all(not r["repo_name"].startswith("zz/") for r in keepers)


def test_clusters_do_not_depend_on_bucket_count(corpus, tmp_path):
    one, _ = run_near_dedup(corpus, tmp_path / "one" if (tmp_path / "one").mkdir() is None else None, buckets=1)
    four, _ = run_near_dedup(list(reversed(corpus)),
                             tmp_path / "four" if (tmp_path / "four").mkdir() is None else None, buckets=4)

    def as_sets(clusters):
        return sorted((r["repo_name"], r["path"], r["keep"], r["size"]) for r in clusters)

    assert as_sets(one) == as_sets(four)


def test_minhash_estimates_jaccard(corpus):
    docs = [d[2] for d in corpus[:40]] + [d[2] for d in corpus[160:180]]
    signatures, _ = minhash_signatures(docs, NGRAM, NUM_PERM, seed=1)
    sets = [shingles(d) for d in docs]
    errors = [np.mean(signatures[i] == signatures[j]) - jaccard(sets[i], sets[j])
              for i, j in itertools.combinations(range(len(docs)), 2)]
    assert abs(np.mean(errors)) < 0.01 and np.std(errors) < 0.04  # unbiased, sd ~ sqrt(J(1-J)/256)


def test_word_hashes_match_python_split():
    texts = ["def foo(x_1): return x_1 + 2", "é foo\tbar", ""]
    hashes, offsets = word_hashes(texts)
    words = [w for t in texts for w in re.split(r"[^A-Za-z_0-9]", t) if w]
    assert len(hashes) == len(words) and list(offsets) == [0, 6, 8, 8]
    by_word = {}
    for w, h in zip(words, hashes.tolist()):
        assert by_word.setdefault(w, h) == h
    assert len(set(by_word.values())) == len(by_word)
    again, _ = word_hashes(["x " * 1000 + "foo"])  # same word, other batch and position
    assert again[-1] == by_word["foo"]


def test_union_find_is_order_independent():
    edges = np.array([[1, 2], [3, 4], [2, 3], [7, 8], [9, 9]], dtype=np.uint64)
    expected = union_find(edges)
    for seed in range(5):
        shuffled = edges[np.random.default_rng(seed).permutation(len(edges))][:, ::-1]
        assert union_find(shuffled) == expected
    assert {expected[i] for i in (1, 2, 3, 4)} == {1} and expected[8] == 7


def test_doc_ids_round_trip_and_sort_by_bucket_then_row():
    rows = np.array([0, 1, 2**32 - 1])
    ids = np.concatenate([encode_doc_ids(3, rows), encode_doc_ids(2**31 - 1, rows)])
    buckets, decoded = decode_doc_ids(ids)
    assert buckets.tolist() == [3] * 3 + [2**31 - 1] * 3 and decoded.tolist() == rows.tolist() * 2
    assert ids.dtype == np.uint64 and (np.diff(ids.astype(object)) > 0).all()


def test_lsh_bands_weighs_false_negatives():
    settings = {"threshold": 0.85, "num_perm": 256, "false_negative_weight": 0.5}
    assert lsh_bands(settings) == optimal_bands(0.85, 256)
    bands, rows = lsh_bands({**settings, "false_negative_weight": 0.9})
    assert (bands, rows) != optimal_bands(0.85, 256) and bands * rows <= 256


def test_band_split_from_threshold():
    bands, rows = optimal_bands(0.85, 256)
    assert bands * rows <= 256

    def s(j):
        return 1 - (1 - j**rows) ** bands

    assert s(0.95) > 0.99 and s(0.6) < 0.01
    b7, r7 = optimal_bands(0.7, 256)
    assert r7 < rows  # lower threshold -> fewer rows per band
