"""Pieces of the report pages (codeparrot.report); the whole report of a real run is rendered
in headless Chromium by tests/test_workflow.py."""

import gzip
import html
import json
import re

import numpy as np
import pytest

from codeparrot.clean.stats import HISTOGRAM_EDGES, histogram, sum_stats
from codeparrot.report.data import funnel, funnel_rows, plot_filter_histograms, quarantine_examples
from codeparrot.report.evaluation import failure_reason
from codeparrot.report.tokenizer import token_view
from codeparrot.report.training import plot_losses, tokens_at


@pytest.mark.parametrize("result, reason", [
    ("passed", "passed"), ("timed out", "timeout"), ("failed: SyntaxError", "syntax error"),
    ("failed: IndentationError", "syntax error"), ("failed: AssertionError", "assertion"),
    ("failed: NameError", "NameError"), ("failed: RecursionError", "RecursionError"),
    ("failed: exited early", "exited early"), ("failed: unsupported result", "unsupported result"),
    (None, "unknown"),
])
def test_failure_reasons_are_classified_from_the_outcome_string(result, reason):
    assert failure_reason(result) == reason


def test_histograms_of_jobs_add_up_and_clamp():
    edges = HISTOGRAM_EDGES["alpha_frac"]
    a, b = histogram("alpha_frac", [0.0, 0.5, 0.51, 1.0, 2.0, None]), histogram("alpha_frac", [0.5])
    total = sum_stats([{"h": a}, {"h": b}])["h"]
    assert sum(total.values()) == 6 and total[str(len(edges) - 2)] == 2  # 1.0 and 2.0 in the last bin
    assert total[str(int(np.searchsorted(edges, 0.5, side="right") - 1))] == 3
    assert histogram("line_max", []) == {}


def test_funnel_ends_at_what_was_kept():
    read = {"records_in": 100, "bytes_in": 10_000, "records_out": 98, "bytes_out": 9_900, "quarantined": 2}
    buckets = {"exact_dedup": {"removed": 30, "bytes_removed": 3_000},
               "removed_by_reason": {"line_max": 5, "alpha_frac": 3, "decontaminated": 1},
               "bytes_removed_by_reason": {"line_max": 900, "alpha_frac": 100, "decontaminated": 50}}
    split = {"near_duplicates_removed": 9, "near_duplicates_bytes_removed": 850}
    rows = funnel_rows(read, funnel(read, buckets, split))
    assert [r[0] for r in rows] == ["read", "quarantined (bad input)", "exact duplicate", "line_max", "alpha_frac",
                                    "decontaminated", "near duplicate"]
    assert rows[-1][3:] == [50, 5_000] and rows[1][1:3] == [2, 100]


def test_quarantine_examples_tolerate_any_record_shape(tmp_path):
    path = tmp_path / "file-000000000000.jsonl.gz"
    lines = [json.dumps({"shard": "file-0", "line": 7, "reason": "invalid_json", "detail": "Expecting value",
                         "raw": "{not json <script>" + "x" * 1000}),
             json.dumps({"reason": "missing_content"}), "not json at all", json.dumps([1, 2]), json.dumps({"other": 1})]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    text = quarantine_examples([str(path)])
    assert "invalid_json" in text and "file-0:7" in text and "&lt;script&gt;" in text and "<script>" not in text
    assert "missing_content" in text and "?" in text and "(1,018 characters)" in text
    assert "No record was quarantined" in quarantine_examples([])


def test_token_view_covers_the_text_once(train_fixture, tmp_path):
    train_fixture.tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    text = "def add(a, b):\n    return a + b  # <sum>\n"
    view = token_view(str(tmp_path / "tokenizer.json"), text)
    spans = view.split("<pre>", 1)[1]
    assert view.count("class='tok'") > 5 and "<sum>" not in spans
    assert html.unescape(re.sub(r"<[^>]+>", "", spans)) == text


def test_plots_are_byte_identical_svgs_with_validation_points_and_resumptions(tmp_path):
    metrics = [{"step": s, "loss": 7 - s / 10, "lr": 1e-3, "grad_norm": 1.0, "tokens": 512 * s, "tokens_per_s": 1e3,
                "mfu": 0.01} for s in range(5, 41, 5)]
    metrics += [{"step": 20, "eval_loss": 5.0}, {"step": 20, "resumed_at_tokens": 10_240},
                {"step": 40, "eval_loss": 4.0}]
    assert tokens_at(metrics)(20) == 10_240
    plot_losses(metrics, tmp_path / "a.svg")
    plot_losses(metrics, tmp_path / "b.svg")
    svg = (tmp_path / "a.svg").read_text()
    assert svg == (tmp_path / "b.svg").read_text() and "<dc:date>" not in svg
    assert "validation loss" in svg and "resumed" in svg
    filters = {"line_max": {"enabled": True, "max": 1000}, "alpha_frac": {"enabled": True, "min": 0.25}}
    histograms = {"line_max": {"kept": histogram("line_max", [50, 80]), "line_max": histogram("line_max", [5000])},
                  "alpha_frac": {"kept": histogram("alpha_frac", [0.6]), "alpha_frac": histogram("alpha_frac", [0.1])}}
    plot_filter_histograms(histograms, filters, {"min_size": 1024, "max_size": 1048575}, tmp_path / "f.svg")
    svg = (tmp_path / "f.svg").read_text()
    assert "threshold (max 1000)" in svg and "threshold (min 0.25)" in svg and "removed by line_max" in svg
