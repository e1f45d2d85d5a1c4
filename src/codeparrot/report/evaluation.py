"""The evaluation pages: HumanEval pass@k, failure reasons, a passing/failing sample pair, and
the code-completion metrics."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

import numpy as np

from codeparrot.eval.humaneval import PUBLISHED, read_problems
from codeparrot.report.render import Raw, page, pct, pre, pyplot, save_svg, table


def failure_reason(result: str | None) -> str:
    """A `result` of humaneval_results.jsonl (the sandbox's closed set, docs/sandbox.md) as a failure
    class: passed, timeout, syntax error, assertion, the builtin exception's name, or the sandbox's
    own reason (exited early, unsupported result, ...)."""
    text = str(result or "")
    if text in ("passed", ""):
        return text or "unknown"
    if text == "timed out":
        return "timeout"
    name = text.removeprefix("failed: ")
    if name in ("SyntaxError", "IndentationError", "TabError"):
        return "syntax error"
    return "assertion" if name == "AssertionError" else name


def plot_failures(results: list[dict], path: str | Path) -> None:
    plt = pyplot()
    counts = Counter(failure_reason(r.get("result")) for r in results if not r.get("passed"))
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(items), 1) + 1.2))
    ax.barh(range(len(items)), [n for _, n in items], color="tab:red")
    ax.set_yticks(range(len(items)), [r for r, _ in items])
    ax.invert_yaxis()
    ax.set(xlabel="failed samples",
           title=f"Why HumanEval samples failed ({sum(counts.values()):,} of {len(results):,})")
    save_svg(fig, path)


def plot_pass_rate(results: list[dict], path: str | Path) -> None:
    """Fraction of samples that passed, per problem (all temperatures together)."""
    plt = pyplot()
    by_task: dict[str, list[bool]] = {}
    for r in results:
        by_task.setdefault(r["task_id"], []).append(bool(r["passed"]))
    tasks = sorted(by_task, key=lambda t: int(t.split("/")[1]))
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.bar([int(t.split("/")[1]) for t in tasks], [sum(by_task[t]) / len(by_task[t]) for t in tasks], width=1.0)
    solved = sum(any(by_task[t]) for t in tasks)
    ax.set(xlabel="HumanEval problem", ylabel="pass rate", ylim=(0, 1),
           title=f"Per-problem pass rate ({solved} of {len(tasks)} problems solved at least once)")
    save_svg(fig, path)


def pass_at_k_page(summary: dict, results: list[dict], samples: list[dict]) -> str:
    ks = sorted({key for scores in summary["per_temperature"].values() for key in scores if key.startswith("pass@")},
                key=lambda key: int(key[5:]))
    published_ks = ["pass@1", "pass@10", "pass@100"]
    rows = [[f"this run, T = {t}", s["samples_per_problem"], *[pct(s.get(k)) for k in published_ks]]
            for t, s in summary["per_temperature"].items()]
    best = summary["best"]
    rows.append(["this run, best over T", "", *[pct(best[k]["value"]) if k in best else "—" for k in published_ks]])
    rows += [[f"published: {name}", 200, *[pct(scores[k]) for k in published_ks]]
             for name, scores in PUBLISHED.items()]
    note = (f"<p>{summary['problems']} problems, {summary['samples']:,} samples, {summary['timed_out']:,} timed out. "
            "pass@k (unbiased estimator) only where every problem has at least k samples; "
            f"this run's k: {', '.join(ks) or 'none'}.</p>")
    if summary.get("isolation") == "none":
        note += ("<p><strong>Generated programs ran WITHOUT isolation (eval.execute.isolation: none): "
                 "they had the job's rights on this machine.</strong></p>")
    reasons = Counter(failure_reason(r.get("result")) for r in results)
    outcomes = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return page("HumanEval", table("pass@k next to the published CodeParrot results",
                                   ["model", "samples/problem", *published_ks], rows), note,
                table("Outcome of the samples", ["outcome", "samples"], outcomes),
                sample_pair(results, samples))


def sample_key(r: dict) -> tuple:
    """What identifies a sample in both the samples and the results file."""
    return r["task_id"], r["temperature"], r.get("sample")


def sample_pair(results: list[dict], samples: list[dict]) -> str:
    """One passing and one failing sample (the first in task order), with the problem's prompt."""
    completions = {sample_key(s): s["completion"] for s in samples}
    problems = {p["task_id"]: p for p in read_problems()}
    order = sorted(results, key=lambda r: (int(r["task_id"].split("/")[1]), r["temperature"], r.get("sample") or 0))
    parts = []
    for title, pick in (("A passing sample", lambda r: r["passed"]), ("A failing sample", lambda r: not r["passed"])):
        r = next((r for r in order if pick(r)), None)
        if r is None:
            parts.append(f"<h3>{title}</h3><p>None in this run.</p>")
            continue
        parts.append(f"<h3>{title}: {html.escape(r['task_id'])}, T = {r['temperature']:g}, outcome "
                     f"<i>{html.escape(str(r.get('result')))}</i> ({failure_reason(r.get('result'))})</h3>")
        parts.append(f"<pre>{html.escape(problems[r['task_id']]['prompt'])}<span class='add'>"
                     f"{html.escape(completions.get(sample_key(r), ''))}</span></pre>")
    return "".join(parts)


def completion_page(completion: dict) -> str:
    models = completion["models"]
    metrics = [("exact_match", "next-line exact match"), ("edit_similarity", "next-line edit similarity"),
               ("humaneval_body_rate", "HumanEval completions that parse and fill the function body")]
    rows = [[label, *[pct(models[m][key]) for m in models]] for key, label in metrics]
    s, first = completion["settings"], models[next(iter(models))]
    note = (f"<p>{first['lines']} lines of held-out validation files (one per file, drawn with seed "
            f"{s['seed']}), the file up to the line before as the prompt, greedy decoding of "
            f"{s['line_max_new_tokens']} tokens, the first line the model starts as its prediction; "
            f"{first['humaneval_problems']} HumanEval prompts completed greedily "
            f"(≤ {s['humaneval_max_new_tokens']} tokens, original stop strings) and parsed with ast: "
            "counted when the function gets a statement other than a bare constant (docstring, string, ...).</p>")
    examples = [[Raw(pre(e["context"])), Raw(pre(e["target"])),
                 *[Raw(pre(e[m], "add" if e[m] == e["target"] else "")) for m in models]]
                for e in completion["line_examples"]]
    return page("Code completion: initial vs trained model",
                table("Completion metrics", ["metric", *models], rows), note,
                table("Line completion examples (context: the 5 lines before)", ["context", "real line", *models],
                      examples))


def plot_completion(completion: dict, path: str | Path) -> None:
    plt = pyplot()
    models = completion["models"]
    keys = [("exact_match", "next-line\nexact match"), ("edit_similarity", "next-line\nedit similarity"),
            ("humaneval_body_rate", "HumanEval completions\nthat parse with a body")]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(models), 1)
    for i, name in enumerate(models):
        values = [100 * models[name][k] for k, _ in keys]
        bars = ax.bar(np.arange(len(keys)) + i * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(np.arange(len(keys)) + width * (len(models) - 1) / 2, [label for _, label in keys])
    ax.set(ylabel="%", ylim=(0, 105), title="Code completion: initial vs trained model")
    ax.legend()
    save_svg(fig, path)
