"""Statistics JSON: every job writes one, the dataset card and the report read them."""

import json
from collections import Counter
from pathlib import Path

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
