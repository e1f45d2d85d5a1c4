"""Plumbing shared by the report pages: reading stage outputs, HTML tables and page frame,
matplotlib set up for byte-identical SVGs."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

STYLE = ("<style>body{font-family:sans-serif;margin:1em} table{border-collapse:collapse;margin:0 0 1.5em}"
         "td,th{border:1px solid #bbb;padding:3px 8px;vertical-align:top} td.n{text-align:right} "
         "caption{text-align:left;font-weight:bold;padding:4px 0} "
         "pre{background:#f6f6f6;padding:6px;margin:2px 0;white-space:pre-wrap;"
         "font-size:12px} .add{background:#dfd} .del{background:#fdd} .tok{border-right:1px solid #fff}</style>")


def as_list(paths: str | list[str]) -> list[str]:
    """Snakemake gives a single input file as a string, several as a list."""
    return [paths] if isinstance(paths, str) else list(paths)


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


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "codeparrot"  # same ids every run: byte-identical SVGs
    import matplotlib.pyplot as plt

    return plt


def save_svg(fig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
