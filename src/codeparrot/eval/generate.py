"""HumanEval completions, sampled as in the original CodeParrot evaluation.

Prompt = end-of-text token + problem prompt (left-truncated to leave room for the new tokens).
Every (problem, temperature, sample) is a row; the rows of one temperature are cut, in task
order, into batches of `batch_size` rows. With many samples per problem a batch holds copies of
one prompt (as the original); with few, consecutive prompts share a batch, left-padded, which
is what keeps a small CPU run fast. Generation stops once every row of the batch has a stop
string in its *generated* text; the completion is that text cut at the stop string. Batches are
planned and seeded from the settings alone and dealt to processes whole, so the samples do not
depend on how many processes share the work.

Runs under `accelerate launch` (codeparrot.launch): `python -m codeparrot.eval.generate --help`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from codeparrot.eval.humaneval import STOP_STRINGS, read_problems, truncate_at_stop
from codeparrot.logs import process_logging

log = logging.getLogger(__name__)

Row = tuple[int, float, int]  # (task index, temperature, sample)


def plan_batches(num_problems: int, temperatures: list[float], n_samples: int, batch_size: int) -> list[list[Row]]:
    """All rows, per temperature in task order, cut into batches of at most `batch_size` rows."""
    batches = []
    for temperature in temperatures:
        rows = [(task, temperature, sample) for task in range(num_problems) for sample in range(n_samples)]
        batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    return batches


def batch_seed(seed: int, first_row: Row) -> int:
    task, temperature, sample = first_row
    return int(np.random.SeedSequence([seed, task, round(temperature * 1000), sample]).generate_state(1)[0])


def prompt_ids(tokenizer, prompt: str, max_length: int) -> list[int]:
    """End-of-text + the prompt's tokens, keeping the last ones when it is too long."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return [tokenizer.eos_token_id] + ids[-(max_length - 1):]


class StopOnStrings:
    """Marks a row done once its generated text (prompt excluded) holds a stop string."""

    def __init__(self, tokenizer, prompt_length: int, stop_strings=STOP_STRINGS):
        self.tokenizer, self.prompt_length, self.stop_strings = tokenizer, prompt_length, stop_strings

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop_strings) for t in texts], device=input_ids.device)


@torch.no_grad()
def complete(model, tokenizer, prompts: list[str], temperature: float, top_p: float, max_new_tokens: int,
             seed: int, stop_strings=STOP_STRINGS) -> tuple[list[str], int]:
    """One completion per prompt (repeat a prompt for several samples), and the tokens generated."""
    from transformers import StoppingCriteriaList

    context = model.config.n_positions
    if max_new_tokens >= context:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the model's context "
                         f"of {context} tokens: lower eval.humaneval.max_new_tokens or eval.completion's "
                         "line_max_new_tokens / humaneval_max_new_tokens, whichever this rule uses.")
    rows = [prompt_ids(tokenizer, prompt, context - max_new_tokens) for prompt in prompts]
    width = max(map(len, rows))
    pad = tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=model.device)
    attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=model.device)
    torch.manual_seed(seed)
    # Temperature 0 is greedy decoding.
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {
        "do_sample": False}
    # StopOnStrings decodes the whole batch at every step: only worth it when there is a string to find.
    stopping = [StopOnStrings(tokenizer, width, stop_strings)] if stop_strings else []
    output = model.generate(
        input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens, pad_token_id=pad,
        eos_token_id=pad, stopping_criteria=StoppingCriteriaList(stopping), **sampling,
    )
    generated = output[:, width:]
    tokens = int((generated != pad).sum())
    texts = tokenizer.batch_decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return [truncate_at_stop(t, stop_strings) for t in texts], tokens


def generate_batches(model, tokenizer, problems: list[dict], batches: list[list[Row]], top_p: float,
                     max_new_tokens: int, seed: int, progress=None) -> tuple[list[dict], int]:
    """Sample lines for the planned `batches` and the number of tokens generated."""
    lines, tokens = [], 0
    for batch in batches:
        temperature = batch[0][1]
        completions, count = complete(model, tokenizer, [problems[task]["prompt"] for task, _, _ in batch],
                                      temperature, top_p, max_new_tokens, batch_seed(seed, batch[0]))
        tokens += count
        lines += [{"task_id": problems[task]["task_id"], "temperature": temperature, "sample": sample,
                   "completion": completion} for (task, _, sample), completion in zip(batch, completions)]
        if progress is not None:
            progress.update(1)
    return lines, tokens


def sort_key(line: dict) -> tuple:
    return int(line["task_id"].split("/")[1]), line["temperature"], line["sample"]


def main(argv: list[str] | None = None) -> None:
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="from_pretrained folder with model and tokenizer")
    parser.add_argument("--output", required=True, help="JSONL of samples")
    parser.add_argument("--temperatures", type=float, nargs="+", required=True)
    # No defaults here: humaneval_generate passes every value (defaults: workflow/schemas/eval.schema.yaml).
    parser.add_argument("--top-p", type=float, required=True)
    parser.add_argument("--n-samples", type=int, required=True)
    parser.add_argument("--max-new-tokens", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--max-problems", type=int, default=None, help="first N problems only")
    args = parser.parse_args(argv)
    process_logging()

    accelerator = Accelerator()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).to(accelerator.device).eval()
    problems = read_problems()[:args.max_problems]
    batches = plan_batches(len(problems), args.temperatures, args.n_samples, args.batch_size)
    mine = batches[accelerator.process_index::accelerator.num_processes]
    progress = tqdm(total=len(mine), desc=f"generate[{accelerator.process_index}]", unit="batch",
                    disable=not accelerator.is_local_main_process)
    start = time.perf_counter()
    with accelerator.autocast():  # eval.mixed_precision on GPUs; a no-op on CPU
        lines, tokens = generate_batches(model, tokenizer, problems, mine, args.top_p, args.max_new_tokens,
                                         args.seed, progress)
    progress.close()
    elapsed = time.perf_counter() - start
    log.info("process %d: %d samples, %d tokens in %.0f s (%.0f tokens/s)", accelerator.process_index, len(lines),
             tokens, elapsed, tokens / max(elapsed, 1e-9))

    output = Path(args.output)
    part = output.with_name(f"{output.name}.part{accelerator.process_index}")
    part.write_text("".join(json.dumps(line) + "\n" for line in lines))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        parts = [output.with_name(f"{output.name}.part{i}") for i in range(accelerator.num_processes)]
        merged = [json.loads(line) for p in parts for line in p.read_text().splitlines()]
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text("".join(json.dumps(line) + "\n" for line in sorted(merged, key=sort_key)))
        os.replace(tmp, output)
        for p in parts:
            p.unlink()
    accelerator.end_training()


def humaneval_generate(model_dir: str, output: str, temperatures: list[float], top_p: float, n_samples: int,
                       max_new_tokens: int, batch_size: int, seed: int, max_problems: int | None = None,
                       num_processes: int = 1, mixed_precision: str = "no", log_path: str | None = None) -> None:
    """The humaneval_generate rule: this module under `accelerate launch`, one process per GPU."""
    from codeparrot.launch import run_accelerate

    args = ["--model", model_dir, "--output", output, "--temperatures", *map(str, temperatures),
            "--top-p", top_p, "--n-samples", n_samples, "--max-new-tokens", max_new_tokens,
            "--batch-size", batch_size, "--seed", seed]
    if max_problems is not None:
        args += ["--max-problems", max_problems]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    run_accelerate("codeparrot.eval.generate", args, num_processes, mixed_precision, log_path=log_path)


if __name__ == "__main__":
    main()
