"""Benchmark of the clean stage on the embedded default corpus (site-packages .py files, 1 KiB-1 MiB).

Every job runs as its own Python process, as Snakemake runs it, and is measured as a whole
process (user+sys CPU, peak RSS, imports included). Figures:
- exact dedup + filters (partition + bucket jobs), without and with the char/token-ratio filter;
- near dedup end to end (signatures + bands + clusters + split jobs);
- peak memory per job; all at 1x, 2x, 4x the corpus (shifted copies), buckets scaled with size;
- a baseline measured in the same run: a single-process re-implementation of the original
  scripts (global-set exact dedup + per-character filters; datasketch-style MinHash of unigram
  sets with greedy LSH clusters), on a sample of the corpus.

    .venv/bin/python bench/bench_clean.py [--work /tmp/bench_clean] [--scales 1 2 4] [--baseline-mb 25]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from codeparrot.raw import RawShardWriter, read_raw_records

SHARD_BYTES = 64 << 20  # the local source's default shard size
# The child reports its own peak RSS (VmHWM belongs to the exec'd image; ru_maxrss would include
# the forked parent's memory).
CHILD = """import json, sys
from codeparrot.arrow import skip_pandas_probe
skip_pandas_probe()  # as the rule scripts do
from {module} import {function} as f
f(**json.loads(sys.argv[1]))
print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])"""


def run_jobs(jobs: list[tuple[str, str, dict]], parallel: int = 2) -> list[dict]:
    """Run (module, function, kwargs) jobs as separate processes; CPU seconds and peak RSS of each."""
    pending, running, results = list(jobs), {}, []
    while pending or running:
        while pending and len(running) < parallel:
            module, function, kwargs = pending.pop(0)
            proc = subprocess.Popen([sys.executable, "-c", CHILD.format(module=module, function=function),
                                     json.dumps(kwargs)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            running[proc.pid] = (proc, function)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        proc, function = running.pop(pid)
        if status != 0:
            raise RuntimeError(f"{function} failed: {proc.stderr.read().decode()[-2000:]}")
        proc.stderr.close()
        peak_kb = int(proc.stdout.read().decode().split()[-1])
        proc.stdout.close()
        results.append({"job": function, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": peak_kb / 1024})
    return results


def make_corpus(work: Path) -> list[str]:
    from codeparrot.sources.local import collect_local

    shards = work / "raw-1x"
    if not (work / "manifest-1x.json").exists():
        collect_local(str(shards), str(work / "manifest-1x.json"), shard_bytes=SHARD_BYTES)
    return sorted(str(p) for p in shards.glob("file-*.json.gz"))


def scaled_corpus(work: Path, base: list[str], scale: int) -> list[str]:
    """The corpus plus scale-1 shifted copies (a header line per file: new hashes, same code)."""
    if scale == 1:
        return base
    out = work / f"raw-{scale}x"
    if not out.exists():
        tmp = work / f"raw-{scale}x.tmp"  # renamed when complete: an interrupted run leaves no half corpus
        shutil.rmtree(tmp, ignore_errors=True)
        with RawShardWriter(tmp, SHARD_BYTES) as writer:
            for copy in range(scale):
                for shard in base:
                    for r in read_raw_records(shard):
                        if copy:
                            r = {**r, "repo_name": f"{r['repo_name']}-copy{copy}",
                                 "content": f"# copy {copy}\n{r['content']}"}
                            r["size"] = len(r["content"].encode())
                        writer.write(r)
        tmp.rename(out)
    return sorted(str(p) for p in out.glob("file-*.json.gz"))


def raw_mb(paths: list[str]) -> float:
    return sum(sum(len(r["content"].encode()) for r in read_raw_records(p)) for p in paths) / 1e6


def train_tokenizer(work: Path, shards: list[str]) -> str:
    """A byte-level BPE code tokenizer (vocab 32768) trained on a sample, for the char/token filter."""
    path = work / "tokenizer.json"
    if not path.exists():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        sample = [r["content"] for r in read_raw_records(shards[0])][:5000]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            sample, trainers.BpeTrainer(vocab_size=32768, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.save(str(path))
    return str(path)


def embedded_config() -> dict:
    """config/config.yaml with the schema's defaults filled in: the bench runs what `snakemake` runs."""
    import yaml

    from codeparrot.config import validate_config

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config/config.yaml").read_text())
    validate_config(config, root / "workflow/schemas/config.schema.yaml")
    return config


def clean_jobs(shards: list[str], work: Path, buckets: int, tokenizer: str | None) -> tuple[list, list, list]:
    import copy

    from codeparrot.clean.filters import resolve_filters, stat_settings

    settings = copy.deepcopy(embedded_config()["clean"])
    settings["filters"]["char_token_ratio"]["tokenizer"] = tokenizer
    filters = resolve_filters(settings["preset"], settings["filters"])
    for sub in ("partition", "stats", "filtered"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    partition = [("codeparrot.clean.partition", "partition_shard", {
        "raw_path": s, "out_path": str(work / "partition" / f"{Path(s).name}.arrow"),
        "quarantine_path": str(work / "stats" / f"{Path(s).name}.q.gz"),
        "stats_path": str(work / "stats" / f"{Path(s).name}.json"),
        "num_buckets": buckets, "stat_settings": stat_settings(filters), "batch_bytes": settings["batch_bytes"],
        "decontaminate": settings["decontaminate"]}) for s in shards]
    parts = [j[2]["out_path"] for j in partition]
    bucket = [("codeparrot.clean.bucket", "clean_bucket", {
        "partition_paths": parts, "bucket": b, "out_path": str(work / "filtered" / f"{b:05d}.parquet"),
        "removed_path": str(work / "filtered" / f"{b:05d}.removed.parquet"),
        "stats_path": str(work / "stats" / f"b{b}.json"),
        "seed": 1, "filters": filters, "license": settings["license"]})
        for b in range(buckets)]
    return partition, bucket, [j[2]["out_path"] for j in bucket]


def near_dedup_jobs(filtered: list[str], work: Path) -> list[list]:
    from codeparrot.clean.near_dedup import band_groups, lsh_bands

    near = embedded_config()["clean"]["near_dedup"]
    bands, rows = lsh_bands(near)
    groups = band_groups(bands, near["band_jobs"])
    (work / "nd").mkdir(parents=True, exist_ok=True)
    sigs = [str(work / "nd" / f"sig-{b:05d}.parquet") for b in range(len(filtered))]
    edges = [str(work / "nd" / f"bands-{g:03d}.parquet") for g in range(len(groups))]
    clusters = str(work / "nd" / "clusters.parquet")
    return [
        [("codeparrot.clean.near_dedup", "bucket_signatures", {
            "filtered_path": f, "bucket": b, "out_path": sigs[b], "stats_path": sigs[b] + ".json",
            "ngram": near["ngram"], "num_perm": near["num_perm"], "bands": bands, "rows": rows,
            "min_words": near["min_words"], "seed": 1,
            "batch_bytes": near["batch_bytes"]}) for b, f in enumerate(filtered)],
        [("codeparrot.clean.near_dedup", "band_edges", {"signature_paths": sigs, "bands": group, "out_path": edges[g]})
         for g, group in enumerate(groups)],
        [("codeparrot.clean.near_dedup", "cluster_duplicates", {
            "edge_paths": edges, "signature_paths": sigs, "out_path": clusters, "stats_path": clusters + ".json"})],
        [("codeparrot.clean.split", "split_bucket", {
            "filtered_path": f, "clusters_path": clusters, "bucket": b,
            "stats_path": str(work / "nd" / f"split-{b}.json"),
            "split_paths": {s: str(work / "dataset" / "data" / f"{s}-{b:05d}.parquet")
                            for s in ("train", "validation")},
            "seed": 1, "validation_fraction": 0.05, "split_by": "hash"}) for b, f in enumerate(filtered)],
    ]


def summarise(results: list[dict]) -> tuple[float, dict, dict]:
    """Total CPU seconds, peak MB per job kind, CPU seconds per job kind."""
    peak, cpu = defaultdict(float), defaultdict(float)
    for r in results:
        peak[r["job"]] = max(peak[r["job"]], r["peak_mb"])
        cpu[r["job"]] += r["cpu_s"]
    return sum(r["cpu_s"] for r in results), dict(peak), {k: round(v, 2) for k, v in cpu.items()}


# ---- baseline: the original scripts' approach, single process -------------------------------------

def baseline_preprocess(records: list[dict], with_ratio_tokenizer: str | None) -> int:
    uniques, kept = set(), 0
    tok = None
    if with_ratio_tokenizer:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(with_ratio_tokenizer)
    for r in records:
        c = r["content"]
        h = hashlib.md5(re.sub(r"\s+", "", c).encode()).hexdigest()
        lengths = [len(line) for line in c.splitlines()]
        stats = {"line_mean": np.mean(lengths), "line_max": max(lengths),
                 "alpha_frac": np.mean([ch.isalnum() for ch in c])}
        lines = c.splitlines()
        auto = any(k in line.lower() for line in lines[:5]
                   for k in ("auto-generated", "autogenerated", "automatically generated"))
        cfg = any(k in line.lower() for line in lines[:5] for k in ("unit tests", "test file", "configuration file"))
        thr, cc, ct = int(0.05 * c.count("\n")), 0, 0
        for line in lines:
            cc += line.lower().count("config")
            ct += line.lower().count("test")
            if cc > thr or ct > thr:
                cfg = True
                break
        nokw = not any(k in c for k in ("def ", "class ", "for ", "while "))
        few = c.count("=") <= 4
        ratio = len(c) / len(tok.encode(c).ids) if tok else 10
        if h in uniques:
            continue
        uniques.add(h)
        if (auto or stats["line_max"] > 1000 or stats["line_mean"] > 100 or stats["alpha_frac"] < 0.25
                or (cfg and np.random.rand() <= 0.7) or (nokw and np.random.rand() <= 0.7) or few or ratio < 1.5):
            continue
        kept += 1
    return kept


def baseline_near_dedup(contents: list[str]) -> int:
    """The original's near dedup: unigram sets, datasketch-style MinHash (sha1 per token, 256
    (a*h+b) mod p permutations, updated token by token), LSH at 0.85, greedy clusters."""
    prime, max_hash = np.uint64((1 << 61) - 1), np.uint64((1 << 32) - 1)
    rng = np.random.RandomState(1)
    a = rng.randint(1, prime, 256, dtype=np.uint64)
    b = rng.randint(0, prime, 256, dtype=np.uint64)
    bands, rows = 13, 19
    tables = [defaultdict(list) for _ in range(bands)]
    clusters = {}
    for i, c in enumerate(contents):
        tokens = {t for t in re.split(r"[^A-Za-z_0-9]", c) if t}
        if len(tokens) < 10:
            continue
        sig = np.full(256, max_hash, dtype=np.uint64)
        for t in tokens:  # datasketch MinHash.update, as the original calls it: one token at a time
            hv = np.uint64(int.from_bytes(hashlib.sha1(t.encode()).digest()[:4], "little"))
            sig = np.minimum(sig, ((a * hv + b) % prime) & max_hash)
        keys = [sig[j * rows:(j + 1) * rows].tobytes() for j in range(bands)]
        candidates = {x for j, k in enumerate(keys) for x in tables[j].get(k, [])}
        if candidates:
            clusters.setdefault(min(candidates), []).append(i)
        for j, k in enumerate(keys):
            tables[j][k].append(i)
    return len(contents) - sum(len(v) for v in clusters.values())


def sample_records(shards: list[str], mb: float) -> list[dict]:
    records, size = [], 0
    for shard in shards:
        for r in read_raw_records(shard):
            records.append(r)
            size += len(r["content"].encode())
            if size >= mb * 1e6:
                return records
    return records


def measure_baseline(shards: list[str], mb: float, tokenizer: str, work: Path) -> dict:
    out = {}
    for name, code in (
        ("preprocess_without_ratio", "baseline_preprocess(records, None)"),
        ("preprocess_with_ratio", f"baseline_preprocess(records, {tokenizer!r})"),
        ("near_dedup", "baseline_near_dedup([r['content'] for r in records])"),
    ):
        script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from bench_clean import *; "
                  f"records = sample_records({shards!r}, {mb}); {code}")
        start = time.time()
        proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        if status:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        out[name] = {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
                     "wall_s": time.time() - start}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/bench_clean")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--baseline-mb", type=float, default=25.0, help="corpus sample (MB) for the slow baseline")
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = make_corpus(work)
    tokenizer = train_tokenizer(work, base)
    report = {"scales": {}}

    # Baseline first, on a sample read by the same code, so both figures come from this run.
    sample_mb = args.baseline_mb
    baseline = measure_baseline(base, sample_mb, tokenizer, work)
    report["baseline"] = {k: {**v, "mb_per_cpu_s": round(sample_mb / v["cpu_s"], 2)} for k, v in baseline.items()}
    print(f"baseline (original approach, one process, {sample_mb:.0f} MB sample):")
    for k, v in report["baseline"].items():
        print(f"  {k:28s} {v['mb_per_cpu_s']:7.2f} MB/CPU-s   peak {v['peak_mb']:.0f} MB")

    for scale in args.scales:
        shards = scaled_corpus(work, base, scale)
        mb = raw_mb(shards)
        buckets = embedded_config()["clean"]["num_buckets"] * scale  # bucket size stays constant
        row = {"raw_mb": round(mb, 1), "shards": len(shards), "buckets": buckets}
        for label, tok in (("without_tokenizer", None), ("with_tokenizer", tokenizer)):
            run = work / f"run-{scale}x-{label}"
            partition, bucket, filtered = clean_jobs(shards, run, buckets, tok)
            results = run_jobs(partition, args.parallel) + run_jobs(bucket, args.parallel)
            cpu, peak, by_job = summarise(results)
            row[f"exact_dedup_filters_{label}"] = {"cpu_s": round(cpu, 2), "mb_per_cpu_s": round(mb / cpu, 2),
                                                   "peak_mb": peak, "cpu_s_by_job": by_job, "jobs": len(results)}
        import pyarrow.parquet as pq
        import pyarrow.compute as pc
        nd_mb = sum(pc.sum(pc.binary_length(pq.read_table(f, columns=["content"])["content"])).as_py()
                    for f in filtered) / 1e6
        results = []
        for stage in near_dedup_jobs(filtered, run):
            results += run_jobs(stage, args.parallel)
        cpu, peak, by_job = summarise(results)
        clusters = json.loads((run / "nd" / "clusters.parquet.json").read_text())
        row["near_dedup"] = {"input_mb": round(nd_mb, 1), "cpu_s": round(cpu, 2), "mb_per_cpu_s": round(nd_mb / cpu, 2),
                             "raw_mb_per_cpu_s": round(mb / cpu, 2), "peak_mb": peak, "removed": clusters["removed"],
                             "cpu_s_by_job": by_job, "jobs": len(results)}
        report["scales"][f"{scale}x"] = row
        e0, e1, nd = (row["exact_dedup_filters_without_tokenizer"], row["exact_dedup_filters_with_tokenizer"],
                      row["near_dedup"])
        print(f"{scale}x: {mb:.0f} MB raw, {len(shards)} shards, {buckets} buckets")
        print(f"  exact dedup + filters          {e0['mb_per_cpu_s']:7.2f} MB/CPU-s  "
              f"(baseline {report['baseline']['preprocess_without_ratio']['mb_per_cpu_s']:.2f}, goal >= 30)")
        print(f"  ... with char/token filter     {e1['mb_per_cpu_s']:7.2f} MB/CPU-s  "
              f"(baseline {report['baseline']['preprocess_with_ratio']['mb_per_cpu_s']:.2f}, goal >= 5)")
        print(f"  near dedup end to end          {nd['mb_per_cpu_s']:7.2f} MB/CPU-s "
              f"of its {nd['input_mb']:.0f} MB input "
              f"({nd['raw_mb_per_cpu_s']:.2f} per raw MB; "
              f"baseline {report['baseline']['near_dedup']['mb_per_cpu_s']:.2f}, goal >= 17)")
        print("  CPU-s by job: "
              + ", ".join(f"{k} {v}" for k, v in {**e0['cpu_s_by_job'], **nd['cpu_s_by_job']}.items())
              + f" ({e0['jobs'] + nd['jobs']} processes)")
        print("  peak MB per job: " + ", ".join(f"{k} {v:.0f}" for k, v in {**e1['peak_mb'], **nd['peak_mb']}.items()))
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(f"full figures: {work / 'report.json'}")


if __name__ == "__main__":
    main()
