"""HumanEval generation with a tiny random GPT-2 (trained tokenizer, offline) and validation loss."""

import json
import math

import numpy as np
import pytest
import torch

from codeparrot.eval.generate import (StopOnStrings, complete, generate_for_problems, generate_samples,
                                      prompt_ids, sort_key)
from codeparrot.eval.humaneval import STOP_STRINGS, read_problems
from codeparrot.eval.validation import validation_loss
from codeparrot.train_data import TokenWindows


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


SETTINGS = dict(temperatures=[0.2, 0.8], top_p=0.95, n_samples=3, max_new_tokens=24, batch_size=2, seed=7)


def test_generations_are_well_formed_deterministic_and_stop(tiny):
    model, tokenizer = tiny
    problems = list(enumerate(read_problems()))[:2]
    lines, tokens = generate_for_problems(model, tokenizer, problems, **SETTINGS)
    again, _ = generate_for_problems(model, tokenizer, problems, **SETTINGS)
    assert lines == again
    assert 0 < tokens <= 2 * 2 * 3 * 24
    assert [(line["task_id"], line["temperature"], line["sample"]) for line in lines] == [
        (f"HumanEval/{i}", t, s) for i in range(2) for t in (0.2, 0.8) for s in range(3)]
    for line in lines:
        assert isinstance(line["completion"], str)
        assert not any(stop in line["completion"] for stop in STOP_STRINGS)
    assert len({line["completion"] for line in lines}) > 1  # sampling, not one repeated string


def test_generation_stops_at_stop_strings_of_the_generated_text_only(tiny):
    model, tokenizer = tiny
    prompt = read_problems()[0]["prompt"]
    # A frequent stop string ends every sequence long before the token limit.
    completions, tokens = complete(model, tokenizer, prompt, 1.0, 1.0, 4, 100, seed=1, stop_strings=("e", "a"))
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


def test_temperature_zero_is_greedy_and_repeats_one_completion(tiny):
    model, tokenizer = tiny
    completions, _ = complete(model, tokenizer, read_problems()[2]["prompt"], 0.0, 0.95, 3, 16, seed=1)
    again, _ = complete(model, tokenizer, read_problems()[2]["prompt"], 0.0, 0.95, 1, 16, seed=99)
    assert completions == again * 3


def test_prompt_starts_with_eos_and_is_left_truncated(tiny):
    _, tokenizer = tiny
    prompt = "def f(x):\n    return x\n" * 50
    full = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = prompt_ids(tokenizer, prompt, 64)
    assert len(ids) == 64 and ids[0] == tokenizer.eos_token_id and ids[1:] == full[-63:]
    assert prompt_ids(tokenizer, "x", 64)[0] == tokenizer.eos_token_id


def test_accelerate_launch_writes_the_same_samples(tiny, train_fixture, tmp_path):
    model, tokenizer = tiny
    output = tmp_path / "samples.jsonl"
    settings = {**SETTINGS, "temperatures": [0.5]}
    generate_samples(str(train_fixture.model), str(output), max_problems=1, num_processes=1,
                     log_path=str(tmp_path / "log"), **settings)
    written = [json.loads(line) for line in output.read_text().splitlines()]
    expected, _ = generate_for_problems(model, tokenizer, list(enumerate(read_problems()))[:1], **settings)
    assert written == sorted(expected, key=sort_key)
    assert not list(tmp_path.glob("*.part*"))


def test_too_many_new_tokens_is_a_clear_error(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="max_new_tokens"):
        complete(model, tokenizer, "def f():", 0.2, 0.95, 1, model.config.n_positions, seed=1)


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
