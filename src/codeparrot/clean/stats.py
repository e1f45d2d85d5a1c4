"""Statistics JSON: every job writes one, the dataset card and the report read them."""

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from codeparrot.raw import write_json


def write_stats(path: str | Path, stats: dict) -> None:
    write_json(path, stats, sort_keys=True)


def read_stats(paths: list[str | Path]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def sum_stats(parts: list[dict]) -> dict:
    """Add up numbers and nested counters key by key (lists are concatenated)."""
    total: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                total[key] = sum_stats([total.get(key, {}), value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, list):
                total[key] = total.get(key, []) + value
            else:
                total[key] = value
    return total


def counter_dict(counter: Counter) -> dict:
    return dict(sorted(counter.items()))


def _log_edges(low: float, high: float, per_decade: int) -> list[float]:
    decades = round(math.log10(high / low))
    return [round(low * 10 ** (i / per_decade), 6) for i in range(decades * per_decade + 1)]


# Fixed bin edges of the filter-statistic histograms: the same in every job, so the jobs' counts add up.
HISTOGRAM_EDGES = {
    "line_max": _log_edges(1, 1e6, 8),
    "line_mean": _log_edges(1, 1e4, 10),
    "alpha_frac": [i / 40 for i in range(41)],
    "char_token_ratio": [i / 4 for i in range(41)],
    "size": _log_edges(1e2, 1e7, 8),
}


def histogram(name: str, values) -> dict:
    """Counts per bin of HISTOGRAM_EDGES[name] as {bin index: count} (sum_stats adds them up);
    values beyond the edges count in the first or last bin, missing values are left out."""
    edges = np.asarray(HISTOGRAM_EDGES[name])
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return {str(b): int(n) for b, n in zip(*np.unique(bins, return_counts=True))}


# The stages of results/stats/clean/, in pipeline order; `clean` is the summary.
STAGES = ("read", "exact_dedup_and_filters", "near_dedup", "split", "clean")


def aggregate_clean_stats(
    stats_dir: str, partition_stats: list[str], bucket_stats: list[str], signature_stats: list[str],
    near_dedup_stats: str | None, split_stats: list[str],
) -> dict[str, dict]:
    """Add up the per-job statistics into one JSON per stage (STAGES) in `stats_dir`; checks that
    every record read is accounted for (kept, removed or quarantined)."""
    read = sum_stats([{k: v for k, v in s.items() if k != "shard"} for s in read_stats(partition_stats)])
    buckets = sum_stats([{k: v for k, v in s.items() if k != "bucket"} for s in read_stats(bucket_stats)])
    near = read_stats([near_dedup_stats])[0] if near_dedup_stats else {"clusters": 0, "removed": 0}
    signed = sum_stats([{k: v for k, v in s.items() if k in ("files", "signed", "skipped_short")}
                        for s in read_stats(signature_stats)])
    near = {**near, **signed}
    final = sum_stats([{k: v for k, v in s.items() if k != "bucket"} for s in read_stats(split_stats)])
    removed = dict(buckets["removed_by_reason"])
    removed["exact_duplicate"] = buckets["exact_dedup"]["removed"]
    removed["near_duplicate"] = final["near_duplicates_removed"]
    kept = sum(s["records"] for s in final["splits"].values())
    summary = {
        "records_in": read["records_in"],
        "bytes_in": read["bytes_in"],
        "quarantined": read["quarantined"],
        "quarantined_by_reason": read["quarantined_by_reason"],
        "normalised": read["normalised"],
        "removed_by_reason": dict(sorted(removed.items())),
        "kept": kept,
        "splits": final["splits"],
    }
    # The accounting identity: nothing is dropped silently.
    accounted = kept + sum(removed.values()) + read["quarantined"]
    if accounted != read["records_in"]:
        raise RuntimeError(f"accounting mismatch: {read['records_in']} records in, {accounted} accounted for")
    per_stage = {"read": read, "exact_dedup_and_filters": buckets, "near_dedup": near, "split": final, "clean": summary}
    for stage, stats in per_stage.items():
        write_stats(Path(stats_dir) / f"{stage}.json", stats)
    return per_stage
