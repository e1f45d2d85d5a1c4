"""The GPU speed features of the training loop, checked on CPU: each gives the same results as the
plain loop (chunked loss, activation checkpointing, the prefetching loader), the micro-batch
arithmetic and probe, the "auto" settings and the FSDP plugin."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from codeparrot.train.data import DeviceBatches, TokenWindows
from codeparrot.train.launch import launch_training
from codeparrot.train.settings import TrainSettings, with_accumulation
from codeparrot.train.speed import (MICRO_BATCH_FILE, ChunkedLossLM, cached_micro_batch, fsdp_plugin,
                                    largest_fitting, resolve_auto)
from test_train import metrics, run_training, settings, weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def no_dropout_model(fx):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(fx.model, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def loss_and_grads(model, batch) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_auto_settings_are_on_for_cuda_and_off_for_cpu(train_fixture, tmp_path):
    base = TrainSettings(**settings(train_fixture, tmp_path))
    keys = ("mixed_precision", "compile", "fused_adamw", "chunked_loss", "auto_micro_batch", "pin_memory")
    assert [getattr(resolve_auto(base, cuda=True), k) for k in keys] == ["bf16", True, True, True, True, True]
    assert [getattr(resolve_auto(base, cuda=False), k) for k in keys] == ["no", False, False, False, False, False]
    chosen = dataclasses.replace(base, mixed_precision="fp16", compile=False, chunked_loss=True)
    assert [getattr(resolve_auto(chosen, cuda=True), k) for k in keys[:4]] == ["fp16", False, True, True]


@pytest.mark.parametrize("chunk_tokens", [37, 10_000])  # uneven chunks; one chunk for the whole batch
def test_chunked_loss_equals_the_plain_loss_and_gradients(train_fixture, tmp_path, chunk_tokens):
    model = no_dropout_model(train_fixture)
    batch = TokenWindows(train_fixture.tokens, "train", 64, seed=1).next_batch(4)
    plain_loss, plain_grads = loss_and_grads(model, batch)
    chunked_loss, chunked_grads = loss_and_grads(ChunkedLossLM(model, chunk_tokens), batch)
    assert chunked_loss == pytest.approx(plain_loss, abs=1e-5)
    assert all(torch.allclose(chunked_grads["lm." + n], g, atol=1e-6, rtol=1e-4) for n, g in plain_grads.items())


def test_activation_checkpointing_gives_the_same_loss_and_gradients(train_fixture, tmp_path):
    model = no_dropout_model(train_fixture)
    model.train()
    batch = TokenWindows(train_fixture.tokens, "train", 64, seed=1).next_batch(4)
    plain_loss, plain_grads = loss_and_grads(model, batch)
    model.activation_checkpointing_enable()
    loss, grads = loss_and_grads(model, batch)
    assert loss == pytest.approx(plain_loss, abs=1e-6)
    assert all(torch.allclose(grads[n], g, atol=1e-7, rtol=1e-5) for n, g in plain_grads.items())


def test_chunked_loss_run_follows_the_plain_loss_curve(train_fixture, tmp_path):
    """Same seed, same data: the chunked loss changes the order of the sums, not the training."""
    common = dict(max_steps=10, log_every=1, eval_every=10, save_every=10)
    run_training(settings(train_fixture, tmp_path / "plain", chunked_loss=False, **common))
    run_training(settings(train_fixture, tmp_path / "chunked", chunked_loss=True, loss_chunk_tokens=100, **common))

    def losses(run):
        return [r.get("loss", r.get("eval_loss")) for r in metrics(tmp_path / run)]

    assert [r["step"] for r in metrics(tmp_path / "chunked")] == [r["step"] for r in metrics(tmp_path / "plain")]
    assert losses("chunked") == pytest.approx(losses("plain"), abs=1e-5)
    plain, chunked = weights(tmp_path / "plain"), weights(tmp_path / "chunked")
    assert plain.keys() == chunked.keys()  # the final model is the plain Hugging Face layout
    assert all(torch.allclose(chunked[k], plain[k], atol=1e-4, rtol=0) for k in plain)


def test_micro_batch_search_finds_the_largest_divisor_that_fits():
    candidates = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 192]
    for limit in (1, 5, 40, 192, 1000):
        tried = []

        def fits(b, tried=tried, limit=limit):
            tried.append(b)
            return b <= limit

        assert largest_fitting(candidates, fits) == max(c for c in candidates if c <= limit)
        assert len(tried) <= 4  # bisection: ⌈log2(14)⌉ tries, not one per candidate
    assert largest_fitting(candidates, lambda b: False) is None


def test_micro_batch_keeps_the_global_batch_exact(train_fixture, tmp_path):
    base = TrainSettings(**settings(train_fixture, tmp_path, batch_size=12, global_batch_size=192))
    for world, micro, accumulation in [(1, 64, 3), (1, 192, 1), (2, 24, 4), (16, 12, 1), (16, 4, 3)]:
        got = with_accumulation(base, world, micro)
        assert (got.batch_size, got.gradient_accumulation_steps) == (micro, accumulation)
        assert got.batch_size * got.gradient_accumulation_steps * world == 192
    with pytest.raises(ValueError, match=r"train.global_batch_size=192 is not a multiple of .* 1 × 5"):
        with_accumulation(base, 5, 1)
    no_global = TrainSettings(**settings(train_fixture, tmp_path, batch_size=8, gradient_accumulation_steps=3))
    got = with_accumulation(no_global, 1, 12)
    assert (got.batch_size, got.gradient_accumulation_steps) == (12, 2)  # 24 sequences per step, as configured


PROBE_CHILD = textwrap.dedent("""
    import json, resource, sys
    import torch
    from transformers import AutoModelForCausalLM
    from codeparrot.train.speed import probe_micro_batch

    model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
    def vm_bytes():
        return int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    # A cap 150 MB above what the process holds now: the CPU allocator fails past it.
    cap = vm_bytes() + 150 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    found = probe_micro_batch(model, torch.device("cpu"), 128, 4096, "no")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    print(json.dumps({"found": found, "grads_left": len(grads)}))
""")


def test_probe_finds_what_fits_under_a_memory_cap(train_fixture, tmp_path):
    """The real probe on CPU: forward + backward at growing micro-batches until the allocator fails."""
    child = subprocess.run([sys.executable, "-c", PROBE_CHILD, str(train_fixture.model)], capture_output=True,
                           text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert 4 <= result["found"] < 4096 and 4096 % result["found"] == 0, result
    assert result["grads_left"] == 0


def test_probe_result_is_cached_per_key(tmp_path):
    from accelerate import PartialState

    state = PartialState(cpu=True)
    probes = []

    def probe():
        probes.append(1)
        return 24

    assert cached_micro_batch(tmp_path, "a", 192, probe, state) == 24
    assert cached_micro_batch(tmp_path, "a", 192, probe, state) == 24
    assert len(probes) == 1
    assert json.loads((tmp_path / MICRO_BATCH_FILE).read_text()) == {"a": 24}
    assert cached_micro_batch(tmp_path, "a", 100, probe, state) == 24 and len(probes) == 2  # 24 ∤ 100: probed again


def test_prefetching_loader_serves_the_same_batches_and_resumes_exactly(train_fixture):
    def direct():
        return TokenWindows(train_fixture.tokens, "train", 64, seed=1)

    source = direct()
    source.next_batch(4)
    reference = [source.next_batch(4) for _ in range(6)]
    loader = DeviceBatches(direct(), 4, torch.device("cpu"), prefetch=3)
    loader.next_batch()
    got = [loader.next_batch() for _ in range(3)]
    state = loader.state_dict()  # read ahead by 3 batches, but the state is after the 4th served
    assert state == {"position": 16}
    resumed = DeviceBatches(direct(), 4, torch.device("cpu"), prefetch=2)
    resumed.load_state_dict(state)
    got += [resumed.next_batch() for _ in range(3)]
    assert all(torch.equal(g, r) for g, r in zip(got, reference, strict=True))


def test_fsdp_plugin_shards_every_gpt2_block(train_fixture, tmp_path):
    model = no_dropout_model(train_fixture)
    for wrapped in (model, ChunkedLossLM(model, 1024)):
        plugin = fsdp_plugin(wrapped)
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # full shard
        assert plugin.transformer_cls_names_to_wrap == ["GPT2Block"]
        assert str(plugin.state_dict_type).endswith("SHARDED_STATE_DICT")
        assert plugin.activation_checkpointing is False  # train.gradient_checkpointing does it


def test_fsdp_on_two_cpu_processes_says_it_is_not_used(train_fixture, tmp_path):
    """Accelerate runs FSDP only over GPU processes: on CPU processes (gloo) the run is plain data
    parallel, gives the same result as without the setting, and says so."""
    common = dict(batch_size=2, global_batch_size=8, max_steps=3, log_every=1)
    launch_training(settings(train_fixture, tmp_path / "fsdp", fsdp=True, **common), num_processes=2,
                    log_path=str(tmp_path / "fsdp.log"))
    launch_training(settings(train_fixture, tmp_path / "ddp", **common), num_processes=2,
                    log_path=str(tmp_path / "ddp.log"))
    assert "train.fsdp has no effect on 2 cpu process(es)" in (tmp_path / "fsdp.log").read_text()
    losses = {run: [r["loss"] for r in metrics(tmp_path / run) if "loss" in r] for run in ("fsdp", "ddp")}
    assert losses["fsdp"] == pytest.approx(losses["ddp"], abs=1e-6)
