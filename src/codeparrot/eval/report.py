"""The workflow report's pages: tables (HTML) and plots (SVG) for `snakemake --report`.

Every page is built from the JSON the stages wrote, so the report shows exactly what the run
produced: dataset statistics, tokenizer, parameter counts, loss curves, throughput and MFU,
validation perplexity, and pass@k next to the published CodeParrot figures.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from codeparrot.eval.humaneval import PUBLISHED
from codeparrot.raw import atomic_write_text, read_jsonl

STYLE = ("<style>body{font-family:sans-serif;margin:1em} table{border-collapse:collapse;margin:0 0 1.5em}"
         "td,th{border:1px solid #bbb;padding:3px 8px} td.n{text-align:right} caption{text-align:left;"
         "font-weight:bold;padding:4px 0}</style>")


def read_json(path: str | Path) -> dict:
    with open(path) as f:
        return json.load(f)


def fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if math.isfinite(value) else str(value)
    return html.escape(str(value))


def table(caption: str, header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{fmt(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
        else f"<td>{fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def page(title: str, *parts: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}"
            f"</head><body><h2>{html.escape(title)}</h2>{''.join(parts)}</body></html>\n")


def dataset_page(clean: dict, near_dedup: dict) -> str:
    """Records in, quarantined, removed per filter, kept per split, duplicate clusters."""
    rows = [["records read", clean["records_in"]], ["bytes read", clean.get("bytes_in")],
            ["quarantined (bad input)", clean["quarantined"]]]
    rows += [[f"quarantined: {reason}", n] for reason, n in sorted(clean.get("quarantined_by_reason", {}).items())]
    rows += [[f"removed: {reason}", n] for reason, n in sorted(clean["removed_by_reason"].items())]
    rows += [[f"kept: {split}", s["records"]] for split, s in sorted(clean["splits"].items())]
    rows += [["kept (all splits)", clean["kept"]]]
    near_rows = [[key, value] for key, value in sorted(near_dedup.items()) if isinstance(value, (int, float))]
    return page("Dataset", table("Records per cleaning step", ["step", "files"], rows),
                table("Near deduplication", ["statistic", "value"], near_rows))


def tokenizer_page(report: dict) -> str:
    ours, base = report["code_tokenizer"], report["baseline_tokenizer"]
    kw = report["keyword_coverage"]
    rows = [["code tokenizer (ours)", report["vocab_size"], ours["chars_per_token"]],
            ["baseline (English text)", report["vocab_size"], base["chars_per_token"]]]
    facts = [["efficiency ratio (chars/token ours ÷ baseline)", report["efficiency_ratio"]],
             ["Python keywords that are one token", f"{kw['single_token']}/{kw['keywords']}"],
             ["… after a space", f"{kw['single_token_after_space']}/{kw['keywords']}"],
             ["longest tokens", ", ".join(repr(t) for t in report.get("longest_tokens", []))]]
    return page("Tokenizer", table("Characters per token on the validation split",
                                   ["tokenizer", "vocabulary", "chars/token"], rows),
                table("Facts", ["", ""], facts))


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
                    ["mean MFU", f"{100 * mean('mfu'):.1f} %"]]
    perplexity = validation["perplexity"]
    evaluation = [["validation loss", validation["loss"]],
                  ["validation perplexity", perplexity if isinstance(perplexity, float) else math.inf],
                  ["windows × tokens", f"{validation['sequences']:,} × {validation['seq_length']:,}"]]
    return page("Model and training", table("GPT-2 shape and parameter counts", ["", ""], shape),
                table("Training", ["", ""], training), table("Validation (results/eval)", ["", ""], evaluation))


def pass_at_k_page(summary: dict) -> str:
    ks = sorted({key for scores in summary["per_temperature"].values() for key in scores if key.startswith("pass@")},
                key=lambda key: int(key[5:]))
    published_ks = ["pass@1", "pass@10", "pass@100"]
    pct = lambda v: "—" if v is None else f"{100 * v:.2f} %"
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
    return page("HumanEval", table("pass@k next to the published CodeParrot results",
                                   ["model", "samples/problem", *published_ks], rows), note)


def plot_losses(metrics: list[dict], path: str | Path) -> None:
    """Training loss per logged step and validation loss per evaluation, one plot."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    evals = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    if train:
        ax.plot(*zip(*train), label="training loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy (nats/token)", title="Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_throughput(metrics: list[dict], path: str | Path) -> None:
    """Tokens per second (left axis) and model FLOPs utilisation (right axis) per logged step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    rows = [m for m in metrics if "tokens_per_s" in m]
    steps = [m["step"] for m in rows]
    ax.plot(steps, [m["tokens_per_s"] for m in rows], color="tab:blue", label="tokens/s")
    ax.set(xlabel="optimizer step", ylabel="tokens/s", title="Throughput and MFU")
    right = ax.twinx()
    right.plot(steps, [100 * m["mfu"] for m in rows], color="tab:orange", label="MFU")
    right.set_ylabel("MFU (%)")
    ax.grid(alpha=0.3)
    fig.legend(loc="lower right")
    _save(fig, path)


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


def build_report(clean_stats: str, near_dedup_stats: str, tokenizer_report: str, model_report: str,
                 metrics: str, validation: str, pass_at_k: str, out: dict[str, str]) -> None:
    """Write the report pages named in `out` (keys: dataset, tokenizer, training, humaneval, loss, throughput)."""
    rows = read_jsonl(metrics)
    if not rows:
        raise ValueError(f"{metrics} is empty: the train stage logged nothing; rerun it (snakemake -R train)")
    pages = {
        "dataset": dataset_page(read_json(clean_stats), read_json(near_dedup_stats)),
        "tokenizer": tokenizer_page(read_json(tokenizer_report)),
        "training": training_page(read_json(model_report), rows, read_json(validation)),
        "humaneval": pass_at_k_page(read_json(pass_at_k)),
    }
    for name, text in pages.items():
        Path(out[name]).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out[name], text)
    plot_losses(rows, out["loss"])
    plot_throughput(rows, out["throughput"])
