"""The workflow report's pages: HTML pages and SVG plots for `snakemake --report`.

Every page is built from what the stages wrote (stats JSON, metrics, results; a handful of
single rows of the dataset for the examples, never the whole dataset), so the report shows
exactly what the run produced. Four groups: data (funnel, filter-statistic histograms, real
examples of every removal, a near-duplicate pair, decontamination hits, licenses), tokenizer,
training, evaluation (HumanEval pass@k, failure reasons, code-completion metrics).
"""

from __future__ import annotations

import difflib
import gzip
import html
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from codeparrot.clean.filters import FILTERS
from codeparrot.clean.stats import HISTOGRAM_EDGES, sum_stats
from codeparrot.eval.humaneval import PUBLISHED, read_problems
from codeparrot.atomic import atomic_write_text
from codeparrot.raw import read_jsonl

STYLE = ("<style>body{font-family:sans-serif;margin:1em} table{border-collapse:collapse;margin:0 0 1.5em}"
         "td,th{border:1px solid #bbb;padding:3px 8px;vertical-align:top} td.n{text-align:right} caption{text-align:left;"
         "font-weight:bold;padding:4px 0} pre{background:#f6f6f6;padding:6px;margin:2px 0;white-space:pre-wrap;"
         "font-size:12px} .add{background:#dfd} .del{background:#fdd} .tok{border-right:1px solid #fff}</style>")
QUARANTINE_EXAMPLES = 5
FILTER_EXAMPLES = 3
# The statistic each threshold filter compares, and the config key of its threshold.
THRESHOLDS = {"line_max": ("line_max", "max"), "line_mean": ("line_mean", "max"), "alpha_frac": ("alpha_frac", "min"),
              "char_token_ratio": ("char_token_ratio", "min")}


def read_json(path: str | Path) -> dict:
    with open(path) as f:
        return json.load(f)


def fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if math.isfinite(value) else str(value)
    return html.escape(str(value))


def table(caption: str, header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{fmt(c)}</td>' if isinstance(c, (int, float, np.integer)) and not isinstance(c, bool)
        else f"<td>{c.html if isinstance(c, Raw) else fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


class Raw:
    """Markup a table cell holds as is (already escaped)."""

    def __init__(self, markup: str):
        self.html = markup


def pre(text: str, cls: str = "") -> str:
    return f"<pre{f' class={cls!r}' if cls else ''}>{html.escape(text)}</pre>"


def page(title: str, *parts: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}"
            f"</head><body><h2>{html.escape(title)}</h2>{''.join(parts)}</body></html>\n")


def pct(value) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


# Data


def funnel(read: dict, buckets: dict, split: dict) -> list[tuple[str, int, int]]:
    """(step, records removed, bytes removed) from reading to what is kept, in pipeline order."""
    removed, removed_bytes = buckets.get("removed_by_reason", {}), buckets.get("bytes_removed_by_reason", {})
    steps = [("quarantined (bad input)", read["quarantined"], read["bytes_in"] - read.get("bytes_out", read["bytes_in"])),
             ("exact duplicate", buckets["exact_dedup"]["removed"], buckets["exact_dedup"].get("bytes_removed", 0))]
    order = [*FILTERS, "decontaminated", "license"]
    for reason in sorted(removed, key=lambda r: (order.index(r) if r in order else len(order), r)):
        steps.append((reason, removed[reason], removed_bytes.get(reason, 0)))
    steps.append(("near duplicate", split.get("near_duplicates_removed", 0), split.get("near_duplicates_bytes_removed", 0)))
    return steps


def funnel_rows(read: dict, steps: list[tuple[str, int, int]]) -> list[list]:
    records, size = read["records_in"], read["bytes_in"]
    rows = [["read", "", "", records, size]]
    for name, n, b in steps:
        records, size = records - n, size - b
        rows.append([name, n, b, records, size])
    return rows


def plot_funnel(rows: list[list], path: str | Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.35 * len(rows) + 1.5), sharey=True)
    names = [r[0] for r in rows]
    for ax, column, label in ((axes[0], 3, "files remaining"), (axes[1], 4, "MB remaining")):
        values = [r[column] / (1e6 if column == 4 else 1) for r in rows]
        ax.barh(range(len(rows)), values, color=["tab:gray"] + ["tab:blue"] * (len(rows) - 2) + ["tab:green"])
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f}" if column == 3 else f" {v:,.1f}", va="center", fontsize=8)
        ax.set(xlabel=label)
        ax.margins(x=0.2)
    axes[0].set_yticks(range(len(rows)), [f"after {n}" if i else n for i, n in enumerate(names)])
    axes[0].invert_yaxis()
    fig.suptitle("Files and bytes through the cleaning steps")
    _save(fig, path)


def plot_filter_histograms(histograms: dict, filters: dict, source: dict, path: str | Path) -> None:
    """Per statistic: kept files, files removed by that statistic's filter and by the other steps; threshold drawn."""
    plt = _pyplot()
    names = [n for n in HISTOGRAM_EDGES if any(histograms.get(n, {}).values())]  # char_token_ratio: only when on
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(8, 2.6 * max(len(names), 1)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        edges = np.asarray(HISTOGRAM_EDGES[name])
        classes = histograms[name]
        own = THRESHOLDS.get(name, (None,))[0]
        groups = {"kept": classes.get("kept", {}),
                  f"removed by {own}": classes.get(own, {}) if own else {},
                  "removed by another step": sum_stats([c for r, c in classes.items() if r not in ("kept", own)])}
        for (label, counts), color in zip(groups.items(), ("tab:green", "tab:red", "tab:gray")):
            heights = np.zeros(len(edges) - 1)
            for b, n in counts.items():
                heights[int(b)] += n
            if heights.any():
                ax.stairs(heights, edges, label=label, color=color, fill=label == "kept", alpha=0.5 if label == "kept" else 1)
        if name in THRESHOLDS and filters.get(name, {}).get("enabled"):
            key, bound = THRESHOLDS[name][0], THRESHOLDS[name][1]
            ax.axvline(filters[key][bound], color="black", ls="--", label=f"threshold ({bound} {filters[key][bound]:g})")
        if name == "size":
            for bound in ("min_size", "max_size"):
                if source.get(bound):
                    ax.axvline(source[bound], color="black", ls=":", label=f"source.{bound} {source[bound]:,}")
        if edges[0] > 0 and edges[-1] / edges[0] > 100:
            ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1)
        ax.set(xlabel=name, ylabel="files")
        ax.legend(fontsize=7)
    fig.suptitle("Filter statistics: kept vs removed (after exact dedup)")
    _save(fig, path)


def filter_examples(examples: list[dict]) -> str:
    by_reason: dict[str, list[dict]] = {}
    for e in sorted(examples, key=lambda e: (e.get("reason", ""), e.get("hash", ""))):
        by_reason.setdefault(e.get("reason", "?"), []).append(e)
    parts = ["<h3>Examples of removed files</h3>"]
    for reason, items in by_reason.items():
        parts.append(f"<h4>{html.escape(reason)}</h4>")
        for e in items[:FILTER_EXAMPLES]:
            parts.append(f"<p><b>{html.escape(str(e.get('repo_name')))}</b> / {html.escape(str(e.get('path')))}"
                         f" (license {html.escape(str(e.get('license')))})</p>")
            parts.append(pre("\n".join(e.get("lines", []))))
    return "".join(parts)


def decontamination_hits(examples: list[dict]) -> str:
    hits = sorted((e for e in examples if e.get("benchmark")), key=lambda e: e.get("hash", ""))
    if not hits:
        return "<h3>Decontamination hits</h3><p>No file contained a benchmark problem.</p>"
    rows = [[e["benchmark"], f"{e.get('repo_name')} / {e.get('path')}",
             Raw(pre(e.get("benchmark_text") or "(text not kept: not a HumanEval problem)")),
             Raw(pre("\n".join(e.get("lines", []))))] for e in hits[:5]]
    return table("Decontamination hits: the benchmark text and the file that contained it",
                 ["benchmark problem", "file", "benchmark text", "file lines"], rows)


def quarantine_examples(paths: list[str]) -> str:
    """The first few quarantined records of each reason. Relies on the fields `reason`, `detail`,
    `shard`, `line` and `raw` of a quarantine line when present (any may be missing)."""
    seen, rows = Counter(), []
    for path in sorted(paths):
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(record, dict):
                    continue
                reason = str(record.get("reason", "?"))
                if seen[reason] >= QUARANTINE_EXAMPLES:
                    continue
                seen[reason] += 1
                raw = str(record.get("raw", ""))
                rows.append([reason, str(record.get("detail", "")), f"{record.get('shard', Path(path).name)}:{record.get('line', '?')}",
                             Raw(pre(raw[:300] + (f"… ({len(raw):,} characters)" if len(raw) > 300 else "")))])
                if len(rows) >= 4 * QUARANTINE_EXAMPLES:
                    break
    if not rows:
        return "<h3>Quarantine</h3><p>No record was quarantined.</p>"
    return table("Quarantined records (first of each reason)", ["reason", "detail", "shard:line", "raw (capped)"], rows)


def read_rows(path: str | Path, rows: list[int], columns: list[str]) -> list[dict]:
    """Single rows of a parquet file, reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    starts = np.cumsum([0] + [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)])
    out = []
    for row in rows:
        group = int(np.searchsorted(starts, row, side="right") - 1)
        out.append(f.read_row_group(group, columns=columns).slice(row - int(starts[group]), 1).to_pylist()[0])
    return out


def near_duplicate_pair(clusters_path: str | None, filtered: list[str]) -> str:
    """The largest near-duplicate cluster and a diff of its kept file against one removed member."""
    if not clusters_path:
        return "<h3>Near duplicates</h3><p>Near deduplication is off.</p>"
    import pyarrow.parquet as pq

    clusters = pq.read_table(clusters_path, columns=["cluster", "id", "bucket", "repo_name", "path", "keep", "size"]).to_pylist()
    if not clusters:
        return "<h3>Near duplicates</h3><p>No near-duplicate cluster.</p>"
    largest = min(clusters, key=lambda r: (-r["size"], r["cluster"]))["cluster"]
    members = sorted((r for r in clusters if r["cluster"] == largest), key=lambda r: (not r["keep"], r["id"]))
    keeper, other = members[0], members[1]
    by_bucket = {int(re.search(r"(\d+)\.parquet$", p).group(1)): p for p in filtered}
    texts = [read_rows(by_bucket[m["bucket"]], [m["id"] & 0xFFFFFFFF], ["content"])[0]["content"] for m in (keeper, other)]
    diff = list(difflib.unified_diff(texts[0].splitlines(), texts[1].splitlines(), "kept", "removed", lineterm="", n=1))
    shown = "".join(f"<div class={'add' if d.startswith('+') else 'del' if d.startswith('-') else ''!r}>{html.escape(d) or '&nbsp;'}</div>"
                    for d in diff[:80])
    names = "".join(f"<li>{'kept' if m['keep'] else 'removed'}: {html.escape(m['repo_name'])} / {html.escape(m['path'])}</li>"
                    for m in members[:10])
    return (f"<h3>Largest near-duplicate cluster ({len(members)} files)</h3><ul>{names}</ul>"
            f"<p>Diff of the kept file against a removed one ({len(diff)} diff lines{', first 80' if len(diff) > 80 else ''}):</p>"
            f"<pre>{shown}</pre>")


def dataset_page(clean: dict, read: dict, buckets: dict, split: dict, near_dedup: dict, quarantine: list[str],
                 clusters: str | None, filtered: list[str]) -> str:
    rows = funnel_rows(read, funnel(read, buckets, split))
    near_rows = [[key, value] for key, value in sorted(near_dedup.items()) if isinstance(value, (int, float))]
    kept_license = sorted(split.get("kept_by_license", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    kept_language = sorted(split.get("kept_by_extension", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    examples = buckets.get("examples", [])
    splits = ", ".join(f"{name}: {v['records']:,}" for name, v in sorted(clean["splits"].items()))
    return page(
        "Dataset",
        table("Funnel: files and bytes removed and remaining after each step", ["step", "files removed", "bytes removed",
                                                                              "files remaining", "bytes remaining"], rows),
        f"<p>Kept: {clean['kept']:,} files ({splits}).</p>",
        table("Near deduplication", ["statistic", "value"], near_rows),
        near_duplicate_pair(clusters, filtered),
        decontamination_hits(examples),
        filter_examples([e for e in examples if not e.get("benchmark")]),
        quarantine_examples(quarantine),
        table("License of the kept files", ["license", "files"], kept_license[:30]),
        table("Language (file extension) of the kept files", ["extension", "files"], kept_language),
    )


# Tokenizer


def token_view(tokenizer_path: str, text: str) -> str:
    """The text as the tokenizer cuts it, one coloured span per token."""
    from tokenizers import Tokenizer

    encoding = Tokenizer.from_file(tokenizer_path).encode(text, add_special_tokens=False)
    colours = ("#fde2e2", "#e2f0fd", "#e5fde2", "#fdf6e2", "#efe2fd")
    spans = "".join(f"<span class='tok' style='background:{colours[i % len(colours)]}'>{html.escape(text[a:b])}</span>"
                    for i, (a, b) in enumerate(encoding.offsets))
    return (f"<h3>How a validation file tokenizes ({len(text):,} characters, {len(encoding.ids):,} tokens, "
            f"{len(text) / max(len(encoding.ids), 1):.2f} characters/token)</h3><pre>{spans}</pre>")


def short_file(validation: list[str], min_chars: int = 300, max_chars: int = 1500) -> str | None:
    """The validation file of size closest to the middle of [min_chars, max_chars] (ties by hash):
    reads the `size` and `hash` columns and one row group."""
    import pyarrow.parquet as pq

    best = None
    for path in sorted(validation):
        table = pq.read_table(path, columns=["size", "hash"])
        for row, (size, key) in enumerate(zip(table["size"].to_pylist(), table["hash"].to_pylist())):
            if min_chars <= size <= max_chars:
                candidate = (abs(size - (min_chars + max_chars) / 2), key, path, row)
                best = min(best, candidate) if best else candidate
    return read_rows(best[2], [best[3]], ["content"])[0]["content"] if best else None


def tokenizer_page(report: dict, tokenizer_path: str, validation: list[str]) -> str:
    ours, base = report["code_tokenizer"], report["baseline_tokenizer"]
    kw = report["keyword_coverage"]
    rows = [["code tokenizer (ours)", report["vocab_size"], ours["chars_per_token"]],
            ["baseline (English text)", report["vocab_size"], base["chars_per_token"]]]
    facts = [["efficiency ratio (chars/token ours ÷ baseline)", report["efficiency_ratio"]],
             ["Python keywords that are one token", f"{kw['single_token']}/{kw['keywords']}"],
             ["… after a space", f"{kw['single_token_after_space']}/{kw['keywords']}"],
             ["keywords split into several tokens", ", ".join(kw.get("split", [])) or "none"]]
    longest = [[repr(t), len(t)] for t in report.get("longest_tokens", [])]
    text = short_file(validation)
    return page("Tokenizer", table("Characters per token on the validation split",
                                   ["tokenizer", "vocabulary", "chars/token"], rows),
                table("Keyword coverage", ["", ""], facts), table("Longest tokens", ["token", "characters"], longest),
                token_view(tokenizer_path, text) if text else "<p>No short validation file to show.</p>")


def plot_chars_per_token(report: dict, path: str | Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    values = [report["code_tokenizer"]["chars_per_token"], report["baseline_tokenizer"]["chars_per_token"]]
    ax.barh([0, 1], values, color=["tab:blue", "tab:gray"])
    ax.set_yticks([0, 1], ["code tokenizer (ours)", "baseline (English text)"])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center")
    ax.set(xlabel="characters per token on the validation split (higher is better)", title="Tokenizer efficiency")
    ax.margins(x=0.15)
    ax.invert_yaxis()
    _save(fig, path)


# Training


def training_page(model: dict, metrics: list[dict], validation: dict) -> str:
    params = model["parameters"]
    shape = [["preset", model.get("preset")], ["layers / width / heads",
             f"{model['n_layer']} / {model['n_embd']} / {model['n_head']}"],
             ["context", model["context_length"]], ["vocabulary (model, padded)", model["model_vocab_size"]],
             ["parameters", params["total"]], ["embedding parameters", params["embedding"]],
             ["non-embedding parameters", params["non_embedding"]]]
    train = [m for m in metrics if "loss" in m]
    training = []
    if train:
        last = train[-1]
        mean = lambda key: sum(m[key] for m in train) / len(train)
        training = [["optimizer steps", last["step"]], ["tokens seen", last.get("tokens")],
                    ["final training loss", last["loss"]], ["mean tokens/s", mean("tokens_per_s")],
                    ["mean MFU", f"{100 * mean('mfu'):.1f} %"],
                    ["resumptions", sum("resumed_at_tokens" in m for m in metrics)]]
    perplexity = validation["perplexity"]
    evaluation = [["validation loss", validation["loss"]],
                  ["validation perplexity", perplexity if isinstance(perplexity, float) else math.inf],
                  ["windows × tokens", f"{validation['sequences']:,} × {validation['seq_length']:,}"]]
    return page("Model and training", table("GPT-2 shape and parameter counts", ["", ""], shape),
                table("Training", ["", ""], training), table("Validation (results/eval)", ["", ""], evaluation))


def tokens_at(metrics: list[dict]):
    """step -> tokens seen, from the training records (evaluation records carry no token count)."""
    known = sorted((m["step"], m["tokens"]) for m in metrics if "tokens" in m and "step" in m)
    steps, tokens = (np.array([k[i] for k in known], dtype=float) for i in (0, 1))
    return lambda step: float(np.interp(step, steps, tokens)) if len(steps) else float(step)


def _mark_resumptions(ax, metrics: list[dict]) -> None:
    for i, m in enumerate(m for m in metrics if "resumed_at_tokens" in m):
        ax.axvline(m["resumed_at_tokens"], color="tab:purple", ls=":", label="resumed" if i == 0 else None)


def plot_losses(metrics: list[dict], path: str | Path) -> None:
    """Training loss per logging window and validation loss per evaluation against tokens seen."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    at = tokens_at(metrics)
    train = [(m["tokens"], m["loss"]) for m in metrics if "loss" in m]
    evals = [(at(m["step"]), m["eval_loss"]) for m in metrics if "eval_loss" in m]
    if train:
        ax.plot(*zip(*train), label="training loss")
    if evals:
        ax.plot(*zip(*evals), "o", label="validation loss")
    _mark_resumptions(ax, metrics)
    ax.set(xlabel="tokens seen", ylabel="cross-entropy (nats/token)", title="Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_optimizer(metrics: list[dict], path: str | Path) -> None:
    """Learning rate and gradient norm (before clipping) against tokens seen."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    rows = [m for m in metrics if "lr" in m]
    tokens = [m["tokens"] for m in rows]
    top.plot(tokens, [m["lr"] for m in rows], color="tab:blue")
    top.set(ylabel="learning rate", title="Learning rate and gradient norm")
    bottom.plot(tokens, [m.get("grad_norm") for m in rows], color="tab:red")
    bottom.set(xlabel="tokens seen", ylabel="gradient norm")
    for ax in (top, bottom):
        _mark_resumptions(ax, metrics)
        ax.grid(alpha=0.3)
    _save(fig, path)


def plot_throughput(metrics: list[dict], path: str | Path) -> None:
    """Tokens per second (left axis) and model FLOPs utilisation (right axis) against tokens seen."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    rows = [m for m in metrics if "tokens_per_s" in m]
    tokens = [m["tokens"] for m in rows]
    ax.plot(tokens, [m["tokens_per_s"] for m in rows], color="tab:blue", label="tokens/s")
    ax.set(xlabel="tokens seen", ylabel="tokens/s", title="Throughput and MFU")
    right = ax.twinx()
    right.plot(tokens, [100 * m["mfu"] for m in rows], color="tab:orange", label="MFU")
    right.set_ylabel("MFU (%)")
    _mark_resumptions(ax, metrics)
    ax.grid(alpha=0.3)
    fig.legend(loc="lower right")
    _save(fig, path)


# Evaluation


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
    plt = _pyplot()
    counts = Counter(failure_reason(r.get("result")) for r in results if not r.get("passed"))
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(items), 1) + 1.2))
    ax.barh(range(len(items)), [n for _, n in items], color="tab:red")
    ax.set_yticks(range(len(items)), [r for r, _ in items])
    ax.invert_yaxis()
    ax.set(xlabel="failed samples", title=f"Why HumanEval samples failed ({sum(counts.values()):,} of {len(results):,})")
    _save(fig, path)


def plot_pass_rate(results: list[dict], path: str | Path) -> None:
    """Fraction of samples that passed, per problem (all temperatures together)."""
    plt = _pyplot()
    by_task: dict[str, list[bool]] = {}
    for r in results:
        by_task.setdefault(r["task_id"], []).append(bool(r["passed"]))
    tasks = sorted(by_task, key=lambda t: int(t.split("/")[1]))
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.bar([int(t.split("/")[1]) for t in tasks], [sum(by_task[t]) / len(by_task[t]) for t in tasks], width=1.0)
    solved = sum(any(by_task[t]) for t in tasks)
    ax.set(xlabel="HumanEval problem", ylabel="pass rate", ylim=(0, 1),
           title=f"Per-problem pass rate ({solved} of {len(tasks)} problems solved at least once)")
    _save(fig, path)


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
    return page("HumanEval", table("pass@k next to the published CodeParrot results",
                                   ["model", "samples/problem", *published_ks], rows), note,
                table("Outcome of the samples", ["outcome", "samples"], sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
                sample_pair(results, samples))


def sample_pair(results: list[dict], samples: list[dict]) -> str:
    """One passing and one failing sample (the first in task order), with the problem's prompt."""
    key = lambda r: (r["task_id"], r["temperature"], r.get("sample"))
    completions = {key(s): s["completion"] for s in samples}
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
                     f"{html.escape(completions.get(key(r), ''))}</span></pre>")
    return "".join(parts)


def completion_page(completion: dict) -> str:
    models = completion["models"]
    metrics = [("exact_match", "next-line exact match"), ("edit_similarity", "next-line edit similarity"),
               ("humaneval_body_rate", "HumanEval completions that parse and fill the function body")]
    rows = [[label, *[pct(models[m][key]) for m in models]] for key, label in metrics]
    s = completion["settings"]
    note = (f"<p>{models[next(iter(models))]['lines']} lines of held-out validation files (one per file, drawn with seed "
            f"{s['seed']}), the file up to the line before as the prompt, greedy decoding of {s['line_max_new_tokens']} tokens, "
            "the first line the model starts as its prediction; "
            f"{models[next(iter(models))]['humaneval_problems']} HumanEval prompts completed greedily "
            f"(≤ {s['humaneval_max_new_tokens']} tokens, original stop strings) and parsed with ast: "
            "counted when the function gets a statement other than a bare constant (docstring, string, ...).</p>")
    examples = [[Raw(pre(e["context"])), Raw(pre(e["target"])), *[Raw(pre(e[m], "add" if e[m] == e["target"] else ""))
                                                                  for m in models]]
                for e in completion["line_examples"]]
    return page("Code completion: initial vs trained model", table("Completion metrics", ["metric", *models], rows), note,
                table("Line completion examples (context: the 5 lines before)", ["context", "real line", *models], examples))


def plot_completion(completion: dict, path: str | Path) -> None:
    plt = _pyplot()
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
    _save(fig, path)


# Plot plumbing


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "codeparrot"  # same ids every run: byte-identical SVGs
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)


def build_report(inputs: dict, out: dict[str, str], filters: dict, source: dict) -> None:
    """Write the report pages and plots named in `out` (see REPORT_PAGES in workflow/rules/report.smk)
    from the stage outputs in `inputs`; `filters`: the resolved clean filters (thresholds drawn),
    `source`: the source settings (size limits drawn)."""
    metrics = read_jsonl(inputs["metrics"])
    if not metrics:
        raise ValueError(f"{inputs['metrics']} is empty: the train stage logged nothing; rerun it (snakemake -R train)")
    as_list = lambda v: [v] if isinstance(v, str) else list(v)
    read, buckets, split = (read_json(inputs[k]) for k in ("read_stats", "filter_stats", "split_stats"))
    tokenizer_report = read_json(inputs["tokenizer_report"])
    results, samples = read_jsonl(inputs["humaneval_results"]), read_jsonl(inputs["humaneval_samples"])
    completion = read_json(inputs["completion"])
    pages = {
        "dataset": dataset_page(read_json(inputs["clean_stats"]), read, buckets, split, read_json(inputs["near_dedup_stats"]),
                                as_list(inputs["quarantine"]), inputs.get("clusters") or None, as_list(inputs["filtered"])),
        "tokenizer": tokenizer_page(tokenizer_report, inputs["tokenizer"], as_list(inputs["validation_data"])),
        "training": training_page(read_json(inputs["model_report"]), metrics, read_json(inputs["validation"])),
        "humaneval": pass_at_k_page(read_json(inputs["pass_at_k"]), results, samples),
        "completion": completion_page(completion),
    }
    for name, text in pages.items():
        Path(out[name]).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out[name], text)
    plot_funnel(funnel_rows(read, funnel(read, buckets, split)), out["funnel"])
    plot_filter_histograms(buckets.get("histograms", {}), filters, source, out["filters"])
    plot_chars_per_token(tokenizer_report, out["chars_per_token"])
    plot_losses(metrics, out["loss"])
    plot_optimizer(metrics, out["optimizer"])
    plot_throughput(metrics, out["throughput"])
    plot_pass_rate(results, out["pass_rate"])
    plot_failures(results, out["failures"])
    plot_completion(completion, out["completion_plot"])
