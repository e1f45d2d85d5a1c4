"""Code-completion metrics a small model moves: next-line completion and HumanEval function bodies.

Line completion, CodeXGLUE style: from held-out validation files a seeded sample of (file,
line) pairs; the prompt is the file up to the end of the line before, without its newline (so
the model writes the newline and the indentation itself, as the BPE saw them in training),
left-truncated to the context; greedy decoding, and the prediction is the first line the model
starts. Scored against the real line with whitespace stripped: exact match, and edit similarity
(difflib's ratio, which is what CodeXGLUE's fuzzywuzzy `fuzz.ratio` computes without
python-Levenshtein). HumanEval: the greedy completion of every prompt (right-stripped, as the
original CodeParrot evaluation does; cut at the original stop strings) makes a program that
parses and gives the function a statement other than a bare constant (docstring, string, `...`). Every model scored
here sees the same prompts.
"""

from __future__ import annotations

import ast
import difflib
import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from codeparrot.arrow import read_parquet
from codeparrot.clean.seeded import seeded_uniform
from codeparrot.config import schema_defaults
from codeparrot.eval.humaneval import STOP_STRINGS, read_problems
from codeparrot.raw import write_json

log = logging.getLogger(__name__)
_COMPLETION = schema_defaults("eval")["completion"]


def sample_lines(contents: dict[str, str], n_lines: int, seed: int, min_line_chars: int) -> list[dict]:
    """`n_lines` (file, line) pairs, one line per file: files in the order of a seeded draw on
    their hash, the line drawn among the file's lines (after the first) with at least
    `min_line_chars` non-blank characters. Independent of file order."""
    picked = []
    for key in sorted(contents, key=lambda k: (seeded_uniform(seed, "completion/file", k), k)):
        lines = contents[key].split("\n")
        candidates = [i for i in range(1, len(lines)) if len(lines[i].strip()) >= min_line_chars]
        if not candidates:
            continue
        line = candidates[int(seeded_uniform(seed, "completion/line", key) * len(candidates))]
        picked.append({"hash": key, "line": line, "prompt": "\n".join(lines[:line]), "target": lines[line]})
        if len(picked) == n_lines:
            break
    return picked


def edit_similarity(prediction: str, target: str) -> float:
    return difflib.SequenceMatcher(None, prediction, target, autojunk=False).ratio()


def parses(source: str) -> bool:
    return _parse(source) is not None


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: source with a null byte
        return None


def has_body(source: str, function: str) -> bool:
    """`source` parses and its function `function` has a statement other than a bare constant
    (its docstring, another string, `...`)."""
    tree = _parse(source)
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            return any(not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in node.body)
    return False


def next_line(generated: str) -> str:
    """The first line the model starts after the prompt's last line (empty if it starts none)."""
    return generated.split("\n")[1].strip() if "\n" in generated else ""


def greedy(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int, stop_strings,
           desc: str) -> list[str]:
    from codeparrot.eval.generate import complete

    out = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        batch = prompts[start:start + batch_size]
        texts, _ = complete(model, tokenizer, batch, 0.0, 1.0, max_new_tokens, 0, stop_strings)
        out += texts
    return out


def score_model(model_dir: str, lines: list[dict], problems: list[dict],
                settings: dict) -> tuple[dict, list[str], list[str]]:
    """Line-completion and HumanEval-syntax scores of one model, with its predictions."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(settings["threads"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    start = time.perf_counter()
    # No stop string: a row would stop at the newline that ends the prompt's line.
    raw = greedy(model, tokenizer, [s["prompt"] for s in lines], settings["line_max_new_tokens"],
                 settings["batch_size"], (), f"lines {Path(model_dir).name}")
    predictions = [next_line(text) for text in raw]
    prompts = [p["prompt"].rstrip() for p in problems]
    targets = [s["target"].strip() for s in lines]
    completions = greedy(model, tokenizer, prompts, settings["humaneval_max_new_tokens"],
                         settings["batch_size"], STOP_STRINGS, f"humaneval {Path(model_dir).name}")
    n = max(len(lines), 1)
    scores = {
        "model": str(model_dir),
        "lines": len(lines),
        "exact_match": sum(p == t for p, t in zip(predictions, targets)) / n,
        "edit_similarity": sum(edit_similarity(p, t) for p, t in zip(predictions, targets)) / n,
        "humaneval_problems": len(problems),
        "humaneval_body_rate": sum(has_body(prompt + c, p["entry_point"])
                                   for prompt, p, c in zip(prompts, problems, completions)) / max(len(problems), 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return scores, predictions, completions


def completion_eval(models: dict[str, str], validation_files: list[str], output: str, seed: int,
                    n_lines: int = _COMPLETION["n_lines"], min_line_chars: int = _COMPLETION["min_line_chars"],
                    line_max_new_tokens: int = _COMPLETION["line_max_new_tokens"],
                    humaneval_problems: int | None = _COMPLETION["humaneval_problems"],
                    humaneval_max_new_tokens: int = _COMPLETION["humaneval_max_new_tokens"],
                    batch_size: int = _COMPLETION["batch_size"], threads: int = 1, examples: int = 8) -> dict:
    """Score every model in `models` ({name: from_pretrained folder}) on the same prompts; write JSON."""
    tables = [read_parquet(f, columns=["hash", "content"]) for f in validation_files]
    contents = {h: c for t in tables for h, c in zip(t["hash"].to_pylist(), t["content"].to_pylist())}
    lines = sample_lines(contents, n_lines, seed, min_line_chars)
    if not lines:
        raise ValueError(f"no line to complete in {validation_files}: the validation split is empty; "
                         "raise clean.split.validation_fraction")
    problems = read_problems()[:humaneval_problems]
    settings = {"seed": seed, "n_lines": n_lines, "min_line_chars": min_line_chars,
                "line_max_new_tokens": line_max_new_tokens, "humaneval_max_new_tokens": humaneval_max_new_tokens,
                "batch_size": batch_size, "threads": threads}
    result = {"settings": settings, "models": {}, "line_examples": [], "humaneval_examples": []}
    predictions, completions = {}, {}
    for name, model_dir in models.items():
        result["models"][name], predictions[name], completions[name] = score_model(model_dir, lines, problems, settings)
        m = result["models"][name]
        log.info("%s: exact match %.3f, edit similarity %.3f, HumanEval completions that parse with a body %.3f (%s s)",
                 name, m["exact_match"], m["edit_similarity"], m["humaneval_body_rate"], m["seconds"])
    for i, s in enumerate(lines[:examples]):
        context = "\n".join(s["prompt"].split("\n")[-5:])
        result["line_examples"].append({"context": context, "target": s["target"].strip(),
                                        **{name: predictions[name][i] for name in models}})
    for i, p in enumerate(problems[:2]):
        result["humaneval_examples"].append({"task_id": p["task_id"],
                                             **{name: completions[name][i] for name in models}})
    write_json(output, result)
    return result
