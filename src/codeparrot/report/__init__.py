"""The workflow report's pages: HTML pages and SVG plots for `snakemake --report`.

Every page is built from what the stages wrote (stats JSON, metrics, results; a handful of
single rows of the dataset for the examples, never the whole dataset), so the report shows
exactly what the run produced. Four groups: data (funnel, filter-statistic histograms, real
examples of every removal, a near-duplicate pair, decontamination hits, licenses), tokenizer,
training, evaluation (HumanEval pass@k, failure reasons, code-completion metrics), one module
each; `render` holds what they share.
"""

from __future__ import annotations

from codeparrot.atomic import atomic_write_text
from codeparrot.raw import read_json, read_jsonl
from codeparrot.report.data import dataset_page, funnel, funnel_rows, plot_filter_histograms, plot_funnel
from codeparrot.report.evaluation import completion_page, pass_at_k_page, plot_completion, plot_failures, plot_pass_rate
from codeparrot.report.render import as_list
from codeparrot.report.tokenizer import plot_chars_per_token, tokenizer_page
from codeparrot.report.training import plot_losses, plot_optimizer, plot_throughput, training_page


def report_pages(inputs: dict, out: dict[str, str], filters: dict, source: dict) -> None:
    """Write the report pages and plots named in `out` (see REPORT_PAGES in workflow/rules/report.smk)
    from the stage outputs in `inputs`; `filters`: the resolved clean filters (thresholds drawn),
    `source`: the source settings (size limits drawn)."""
    metrics = read_jsonl(inputs["metrics"])
    if not metrics:
        raise ValueError(f"{inputs['metrics']} is empty: the train stage logged nothing; rerun it (snakemake -R train)")
    read, buckets, split = (read_json(inputs[k]) for k in ("read_stats", "filter_stats", "split_stats"))
    tokenizer_report = read_json(inputs["tokenizer_report"])
    results, samples = read_jsonl(inputs["humaneval_results"]), read_jsonl(inputs["humaneval_samples"])
    completion = read_json(inputs["completion"])
    pages = {
        "dataset": dataset_page(read_json(inputs["clean_stats"]), read, buckets, split,
                                read_json(inputs["near_dedup_stats"]), as_list(inputs["quarantine"]),
                                inputs.get("clusters") or None, as_list(inputs["filtered"])),
        "tokenizer": tokenizer_page(tokenizer_report, inputs["tokenizer"], as_list(inputs["validation_data"])),
        "training": training_page(read_json(inputs["model_report"]), metrics, read_json(inputs["validation"])),
        "humaneval": pass_at_k_page(read_json(inputs["pass_at_k"]), results, samples),
        "completion": completion_page(completion),
    }
    for name, text in pages.items():
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
