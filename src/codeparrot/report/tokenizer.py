"""The tokenizer page: characters per token against a baseline, keywords, longest tokens, one
validation file cut into its tokens."""

from __future__ import annotations

import html
from pathlib import Path

from codeparrot.arrow import read_parquet
from codeparrot.report.render import page, pyplot, read_rows, save_svg, table


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
    best = None
    for path in sorted(validation):
        table = read_parquet(path, columns=["size", "hash"])
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    values = [report["code_tokenizer"]["chars_per_token"], report["baseline_tokenizer"]["chars_per_token"]]
    ax.barh([0, 1], values, color=["tab:blue", "tab:gray"])
    ax.set_yticks([0, 1], ["code tokenizer (ours)", "baseline (English text)"])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center")
    ax.set(xlabel="characters per token on the validation split (higher is better)", title="Tokenizer efficiency")
    ax.margins(x=0.15)
    ax.invert_yaxis()
    save_svg(fig, path)
