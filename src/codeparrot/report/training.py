"""The training page and its curves: loss, optimizer, throughput (resumptions marked)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from codeparrot.report.render import page, pyplot, save_svg, table


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
        mean_tokens_per_s, mean_mfu = (sum(m[key] for m in train) / len(train) for key in ("tokens_per_s", "mfu"))
        training = [["optimizer steps", last["step"]], ["tokens seen", last.get("tokens")],
                    ["final training loss", last["loss"]], ["mean tokens/s", mean_tokens_per_s],
                    ["mean MFU", f"{100 * mean_mfu:.1f} %"],
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
    plt = pyplot()
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
    save_svg(fig, path)


def plot_optimizer(metrics: list[dict], path: str | Path) -> None:
    """Learning rate and gradient norm (before clipping) against tokens seen."""
    plt = pyplot()
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
    save_svg(fig, path)


def plot_throughput(metrics: list[dict], path: str | Path) -> None:
    """Tokens per second (left axis) and model FLOPs utilisation (right axis) against tokens seen."""
    plt = pyplot()
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
    save_svg(fig, path)
