"""Model presets and init: documented parameter counts, seeded weights, a loadable folder."""

import json

import pytest

from codeparrot.model import build_config, build_model, init_model, padded_vocab_size, parameter_counts
from codeparrot.tokenizer import train_tokenizer
from tokenizer_fixtures import small_dataset


@pytest.mark.parametrize("preset, low, high", [
    ("codeparrot-small", 105e6, 115e6),  # ≈110 M (GPT-2 small shape, vocab 32768)
    ("codeparrot", 1.45e9, 1.6e9),       # ≈1.5 B (GPT-2 XL shape)
])
def test_presets_have_the_documented_sizes(preset, low, high):
    config = build_config(preset, vocab_size=32768, context_length=1024, eos_token_id=0)
    model = build_model(config, device="meta")  # shapes only: instant, no memory
    counts = parameter_counts(model)
    assert low < counts["total"] < high
    assert counts["embedding"] == (32768 + 1024) * config.n_embd
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, counted once
    assert config.scale_attn_by_inverse_layer_idx and config.reorder_and_upcast_attn


def test_vocab_padding_and_overrides():
    assert padded_vocab_size(8192, 64) == 8192
    assert padded_vocab_size(8193, 64) == 8256
    assert padded_vocab_size(8193, 1) == 8193
    config = build_config("tiny", 1000, 64, 0, overrides={"n_layer": 1, "reorder_and_upcast_attn": False})
    assert (config.vocab_size, config.n_positions, config.n_layer, config.n_embd) == (1024, 64, 1, 128)
    assert not config.reorder_and_upcast_attn


def test_bad_shapes_fail_with_the_key():
    with pytest.raises(ValueError, match="allowed values: tiny, codeparrot-small, codeparrot"):
        build_config("gpt2-large", 1000, 64, 0)
    with pytest.raises(ValueError, match="n_embd=130 is not divisible by n_head=4"):
        build_config("tiny", 1000, 64, 0, overrides={"n_embd": 130})


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    files, _ = small_dataset(tmp_path_factory.mktemp("dataset"))
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(files["train"], out, vocab_size=1000, n_files=None, seed=1)
    return out


def test_init_model_folder_loads_and_is_seeded(tokenizer_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report = init_model(tokenizer_dir, tmp_path / "a", tmp_path / "a.json", "tiny", 128, seed=1)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert json.loads((tmp_path / "a.json").read_text()) == report
    assert report["parameters"] == parameter_counts(model)
    assert report["tokenizer_vocab_size"] == len(tokenizer) == 1000
    assert model.config.vocab_size == report["model_vocab_size"] == 1024
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.n_positions == tokenizer.model_max_length == 128
    assert (tmp_path / "a" / "model.safetensors").exists()

    ids = torch.tensor([tokenizer("def f(x):\n    return x\n")["input_ids"]])
    assert model(ids, labels=ids).loss.item() == pytest.approx(torch.log(torch.tensor(1024.0)).item(), rel=0.05)

    init_model(tokenizer_dir, tmp_path / "b", tmp_path / "b.json", "tiny", 128, seed=1)
    init_model(tokenizer_dir, tmp_path / "c", tmp_path / "c.json", "tiny", 128, seed=2)
    def weights(folder: str) -> bytes:
        return (tmp_path / folder / "model.safetensors").read_bytes()

    assert weights("a") == weights("b") != weights("c")


def test_push_without_repo_id_says_which_key(tmp_path):
    from codeparrot.model import push_model

    with pytest.raises(ValueError, match="model.repo_id"):
        push_model(tmp_path, None, tmp_path / "pushed.json")
