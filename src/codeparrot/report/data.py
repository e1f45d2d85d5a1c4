"""The data pages: the cleaning funnel, filter-statistic histograms, real examples of every
removal, a near-duplicate pair, decontamination hits, licenses."""

from __future__ import annotations

import difflib
import gzip
import html
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from codeparrot.arrow import read_parquet
from codeparrot.clean.doc_id import decode_doc_ids
from codeparrot.clean.filters import FILTERS
from codeparrot.clean.stats import HISTOGRAM_EDGES, sum_stats
from codeparrot.report.render import Raw, page, pre, pyplot, read_rows, save_svg, table

QUARANTINE_EXAMPLES = 5
FILTER_EXAMPLES = 3
# The statistic each threshold filter compares, and the config key of its threshold.
THRESHOLDS = {"line_max": ("line_max", "max"), "line_mean": ("line_mean", "max"), "alpha_frac": ("alpha_frac", "min"),
              "char_token_ratio": ("char_token_ratio", "min")}


def funnel(read: dict, buckets: dict, split: dict) -> list[tuple[str, int, int]]:
    """(step, records removed, bytes removed) from reading to what is kept, in pipeline order."""
    removed, removed_bytes = buckets.get("removed_by_reason", {}), buckets.get("bytes_removed_by_reason", {})
    exact = buckets["exact_dedup"]
    quarantined_bytes = read["bytes_in"] - read.get("bytes_out", read["bytes_in"])
    steps = [("quarantined (bad input)", read["quarantined"], quarantined_bytes),
             ("exact duplicate", exact["removed"], exact.get("bytes_removed", 0))]
    order = [*FILTERS, "decontaminated", "license"]
    for reason in sorted(removed, key=lambda r: (order.index(r) if r in order else len(order), r)):
        steps.append((reason, removed[reason], removed_bytes.get(reason, 0)))
    steps.append(("near duplicate", split.get("near_duplicates_removed", 0),
                  split.get("near_duplicates_bytes_removed", 0)))
    return steps


def funnel_rows(read: dict, steps: list[tuple[str, int, int]]) -> list[list]:
    records, size = read["records_in"], read["bytes_in"]
    rows = [["read", "", "", records, size]]
    for name, n, b in steps:
        records, size = records - n, size - b
        rows.append([name, n, b, records, size])
    return rows


def plot_funnel(rows: list[list], path: str | Path) -> None:
    plt = pyplot()
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
    save_svg(fig, path)


def plot_filter_histograms(histograms: dict, filters: dict, source: dict, path: str | Path) -> None:
    """Per statistic: kept files, files removed by that statistic's filter and by the other steps; threshold drawn."""
    plt = pyplot()
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
                kept = label == "kept"
                ax.stairs(heights, edges, label=label, color=color, fill=kept, alpha=0.5 if kept else 1)
        if name in THRESHOLDS and filters.get(name, {}).get("enabled"):
            key, bound = THRESHOLDS[name][0], THRESHOLDS[name][1]
            threshold = filters[key][bound]
            ax.axvline(threshold, color="black", ls="--", label=f"threshold ({bound} {threshold:g})")
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
    save_svg(fig, path)


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
                where = f"{record.get('shard', Path(path).name)}:{record.get('line', '?')}"
                rows.append([reason, str(record.get("detail", "")), where,
                             Raw(pre(raw[:300] + (f"… ({len(raw):,} characters)" if len(raw) > 300 else "")))])
                if len(rows) >= 4 * QUARANTINE_EXAMPLES:
                    break
    if not rows:
        return "<h3>Quarantine</h3><p>No record was quarantined.</p>"
    return table("Quarantined records (first of each reason)", ["reason", "detail", "shard:line", "raw (capped)"], rows)


def near_duplicate_pair(clusters_path: str | None, filtered: list[str]) -> str:
    """The largest near-duplicate cluster and a diff of its kept file against one removed member."""
    if not clusters_path:
        return "<h3>Near duplicates</h3><p>Near deduplication is off.</p>"
    columns = ["cluster", "id", "bucket", "repo_name", "path", "keep", "size"]
    clusters = read_parquet(clusters_path, columns=columns).to_pylist()
    if not clusters:
        return "<h3>Near duplicates</h3><p>No near-duplicate cluster.</p>"
    largest = min(clusters, key=lambda r: (-r["size"], r["cluster"]))["cluster"]
    members = sorted((r for r in clusters if r["cluster"] == largest), key=lambda r: (not r["keep"], r["id"]))
    keeper, other = members[0], members[1]
    by_bucket = {int(re.search(r"(\d+)\.parquet$", p).group(1)): p for p in filtered}
    texts = [read_rows(by_bucket[m["bucket"]], [int(decode_doc_ids([m["id"]])[1][0])], ["content"])[0]["content"]
             for m in (keeper, other)]
    diff = list(difflib.unified_diff(texts[0].splitlines(), texts[1].splitlines(), "kept", "removed", lineterm="", n=1))
    shown = "".join(f"<div class={'add' if d.startswith('+') else 'del' if d.startswith('-') else ''!r}>"
                    f"{html.escape(d) or '&nbsp;'}</div>" for d in diff[:80])
    names = "".join(f"<li>{'kept' if m['keep'] else 'removed'}: "
                    f"{html.escape(m['repo_name'])} / {html.escape(m['path'])}</li>" for m in members[:10])
    return (f"<h3>Largest near-duplicate cluster ({len(members)} files)</h3><ul>{names}</ul>"
            f"<p>Diff of the kept file against a removed one "
            f"({len(diff)} diff lines{', first 80' if len(diff) > 80 else ''}):</p>"
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
        table("Funnel: files and bytes removed and remaining after each step",
              ["step", "files removed", "bytes removed", "files remaining", "bytes remaining"], rows),
        f"<p>Kept: {clean['kept']:,} files ({splits}).</p>",
        table("Near deduplication", ["statistic", "value"], near_rows),
        near_duplicate_pair(clusters, filtered),
        decontamination_hits(examples),
        filter_examples([e for e in examples if not e.get("benchmark")]),
        quarantine_examples(quarantine),
        table("License of the kept files", ["license", "files"], kept_license[:30]),
        table("Language (file extension) of the kept files", ["extension", "files"], kept_language),
    )
