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
