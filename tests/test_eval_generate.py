"""HumanEval generation with a tiny random GPT-2 (trained tokenizer, offline) and validation loss."""

import json
import math

import numpy as np
import pytest
import torch

from codeparrot.eval.generate import (StopOnStrings, complete, generate_batches, humaneval_generate, plan_batches,
                                      prompt_ids, sort_key)
from codeparrot.eval.humaneval import STOP_STRINGS, read_problems
from codeparrot.eval.validation import validation_loss
from codeparrot.train.data import TokenWindows


@pytest.fixture(autouse=True)
def one_thread():
    """A tiny model runs fastest on one thread (and does not fight other jobs for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(train_fixture):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(train_fixture.model).eval()
    return model, AutoTokenizer.from_pretrained(train_fixture.model)


SETTINGS = dict(top_p=0.95, max_new_tokens=24, seed=7)


def test_batches_cover_every_row_once_in_task_order():
    batches = plan_batches(3, [0.2, 0.8], n_samples=2, batch_size=4)
    assert batches == [[(0, 0.2, 0), (0, 0.2, 1), (1, 0.2, 0), (1, 0.2, 1)], [(2, 0.2, 0), (2, 0.2, 1)],
                       [(0, 0.8, 0), (0, 0.8, 1), (1, 0.8, 0), (1, 0.8, 1)], [(2, 0.8, 0), (2, 0.8, 1)]]
    many = plan_batches(164, [0.2, 0.6, 0.8], n_samples=200, batch_size=50)  # the original: one prompt per batch
    assert len(many) == 164 * 3 * 4 and all(len({task for task, _, _ in b}) == 1 for b in many)


def test_generations_are_well_formed_deterministic_and_stop(tiny):
    model, tokenizer = tiny
    problems = read_problems()[:2]
    batches = plan_batches(2, [0.2, 0.8], n_samples=3, batch_size=2)
    lines, tokens = generate_batches(model, tokenizer, problems, batches, **SETTINGS)
    again, _ = generate_batches(model, tokenizer, problems, batches, **SETTINGS)
    assert lines == again
    assert 0 < tokens <= 2 * 2 * 3 * 24
    assert sorted((line["task_id"], line["temperature"], line["sample"]) for line in lines) == [
        (f"HumanEval/{i}", t, s) for i in range(2) for t in (0.2, 0.8) for s in range(3)]
    for line in lines:
        assert isinstance(line["completion"], str)
        assert not any(stop in line["completion"] for stop in STOP_STRINGS)
    assert len({line["completion"] for line in lines}) > 1  # sampling, not one repeated string


def test_left_padded_prompts_complete_as_if_alone(tiny):
    model, tokenizer = tiny
    short, long = read_problems()[2]["prompt"], read_problems()[0]["prompt"]
    alone, _ = complete(model, tokenizer, [short], 0.0, 1.0, 16, seed=1)
    together, _ = complete(model, tokenizer, [long, short, short], 0.0, 1.0, 16, seed=1)
    assert together[1] == together[2] == alone[0]  # greedy: padding and batch neighbours change nothing


def test_generation_stops_at_stop_strings_of_the_generated_text_only(tiny):
    model, tokenizer = tiny
    prompt = read_problems()[0]["prompt"]
    # A frequent stop string ends every row long before the token limit.
    completions, tokens = complete(model, tokenizer, [prompt] * 4, 1.0, 1.0, 100, seed=1, stop_strings=("e", "a"))
    assert tokens < 4 * 100 / 2
    assert all("e" not in c and "a" not in c for c in completions)
    # The prompt holds "def" after a newline; only generated text may trigger the stop.
    ids = prompt_ids(tokenizer, "x = 1\ndef f():\n", 100)
    stop = StopOnStrings(tokenizer, len(ids))
    tail = tokenizer("    return 1", add_special_tokens=False)["input_ids"]
    done = tokenizer("    return 1\nif", add_special_tokens=False)["input_ids"]
    width = max(len(tail), len(done))
    batch = torch.tensor([ids + tail + [tokenizer.eos_token_id] * (width - len(tail)), ids + done +
                          [tokenizer.eos_token_id] * (width - len(done))])
    assert stop(batch, None).tolist() == [False, True]


def test_prompt_starts_with_eos_and_is_left_truncated(tiny):
    _, tokenizer = tiny
    prompt = "def f(x):\n    return x\n" * 50
    full = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = prompt_ids(tokenizer, prompt, 64)
    assert len(ids) == 64 and ids[0] == tokenizer.eos_token_id and ids[1:] == full[-63:]
    assert prompt_ids(tokenizer, "x", 64)[0] == tokenizer.eos_token_id


def test_two_accelerate_processes_write_the_same_samples_as_one(tiny, train_fixture, tmp_path):
    model, tokenizer = tiny
    output = tmp_path / "samples.jsonl"
    settings = dict(temperatures=[0.5], n_samples=3, batch_size=2, **SETTINGS)
    humaneval_generate(str(train_fixture.model), str(output), max_problems=2, num_processes=2,
                       log_path=str(tmp_path / "log"), **settings)
    written = [json.loads(line) for line in output.read_text().splitlines()]
    expected, _ = generate_batches(model, tokenizer, read_problems()[:2], plan_batches(2, [0.5], 3, 2), **SETTINGS)
    assert written == sorted(expected, key=sort_key)
    assert not list(tmp_path.glob("*.part*"))


def test_too_many_new_tokens_is_a_clear_error(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="max_new_tokens"):
        complete(model, tokenizer, ["def f():"], 0.2, 0.95, model.config.n_positions, seed=1)


def test_validation_loss_is_deterministic_and_matches_a_direct_computation(tiny, train_fixture, tmp_path):
    model, tokenizer = tiny
    whole = validation_loss(train_fixture.model, train_fixture.tokens, tmp_path / "all.json", batch_size=16)
    windows = TokenWindows(train_fixture.tokens, "validation", 128, seed=0, shuffle=False)
    assert whole["sequences"] == windows.num_windows and whole["seq_length"] == 128
    assert whole["perplexity"] == pytest.approx(math.exp(whole["loss"]))
    assert abs(whole["loss"] - math.log(len(tokenizer))) < 1.0  # random init: near uniform
    first = validation_loss(train_fixture.model, train_fixture.tokens, tmp_path / "a.json", max_sequences=10,
                            batch_size=3)
    validation_loss(train_fixture.model, train_fixture.tokens, tmp_path / "b.json", max_sequences=10, batch_size=3)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    with torch.no_grad():
        losses = [model(input_ids=(b := windows.next_batch(1)), labels=b).loss.item() for _ in range(10)]
    assert first["sequences"] == 10
    assert json.loads((tmp_path / "a.json").read_text())["loss"] == pytest.approx(np.mean(losses), rel=1e-5)


def test_validation_window_longer_than_context_is_a_clear_error(train_fixture, tmp_path):
    with pytest.raises(ValueError, match="seq_length"):
        validation_loss(train_fixture.model, train_fixture.tokens, tmp_path / "x.json", seq_length=4096)
