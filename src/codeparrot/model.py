"""A freshly initialised GPT-2 for the trained tokenizer, from a named preset.

Both published CodeParrot models are GPT-2 shapes with two stability options of the GPT-2
code (`scale_attn_by_inverse_layer_idx`, `reorder_and_upcast_attn`); `tiny` is the shape that
trains fastest per unit of loss on a CPU here.
"""

import logging
from pathlib import Path

from codeparrot.atomic import save_pretrained
from codeparrot.config import schema_defaults
from codeparrot.raw import write_json

logger = logging.getLogger(__name__)
_MODEL = schema_defaults("model")

PRESETS: dict[str, dict] = {
    "tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4},
    "codeparrot-small": {"n_layer": 12, "n_embd": 768, "n_head": 12},  # gpt2, ≈110 M
    "codeparrot": {"n_layer": 48, "n_embd": 1600, "n_head": 25},       # gpt2-xl, ≈1.5 B
}
STABILITY = {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True}


def padded_vocab_size(vocab_size: int, multiple: int) -> int:
    """Round up so the embedding and output matmuls get tensor-core friendly shapes."""
    return -(-vocab_size // multiple) * multiple


def build_config(preset: str, vocab_size: int, context_length: int, eos_token_id: int,
                 vocab_multiple: int = _MODEL["vocab_multiple"], overrides: dict | None = None):
    from transformers import GPT2Config

    if preset not in PRESETS:
        raise ValueError(f"model.preset={preset!r} is unknown; allowed values: {', '.join(PRESETS)}")
    fields = {**PRESETS[preset], **STABILITY, **(overrides or {})}
    if fields["n_embd"] % fields["n_head"]:
        raise ValueError(f"model: n_embd={fields['n_embd']} is not divisible by n_head={fields['n_head']}; "
                         "change model.overrides.n_embd or n_head.")
    return GPT2Config(vocab_size=padded_vocab_size(vocab_size, vocab_multiple), n_positions=context_length,
                      bos_token_id=eos_token_id, eos_token_id=eos_token_id, **fields)


def parameter_counts(model) -> dict:
    """Total (tied output layer counted once) and without the token and position embeddings."""
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    return {"total": total, "embedding": embeddings, "non_embedding": total - embeddings}


def build_model(config, seed: int | None = None, device: str | None = None):
    """GPT2LMHeadModel with seeded weights (`device="meta"`: shapes only, for counting)."""
    import torch
    from transformers import GPT2LMHeadModel

    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        return GPT2LMHeadModel(config)


def init_model(tokenizer_dir: str | Path, out_dir: str | Path, report_path: str | Path, preset: str,
               context_length: int, seed: int, vocab_multiple: int = _MODEL["vocab_multiple"],
               overrides: dict | None = None) -> dict:
    """Initialise the model for the tokenizer and save both, `from_pretrained` loadable, in `out_dir`."""
    from codeparrot.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    tokenizer.model_max_length = context_length
    config = build_config(preset, len(tokenizer), context_length, tokenizer.eos_token_id,
                          vocab_multiple, overrides)
    model = build_model(config, seed)
    counts = parameter_counts(model)
    out_dir = Path(out_dir)
    save_pretrained(out_dir, model, tokenizer)
    report = {
        "preset": preset,
        "n_layer": config.n_layer, "n_embd": config.n_embd, "n_head": config.n_head,
        "context_length": context_length,
        "tokenizer_vocab_size": len(tokenizer), "model_vocab_size": config.vocab_size,
        "parameters": counts,
    }
    write_json(report_path, report)
    logger.info("GPT-2 preset %s: %.2f M parameters (%.2f M without embeddings) -> %s", preset,
                counts["total"] / 1e6, counts["non_embedding"] / 1e6, out_dir)
    return report


def push_model(model_dir: str | Path, repo_id: str, receipt_path: str | Path) -> dict:
    """Upload the initialised model folder to the Hub and record where it went."""
    from codeparrot.hub import push_folder

    if not repo_id:
        raise ValueError("model.repo_id is not set: give the Hub repository (user/name) to push the model to.")
    return push_folder(str(model_dir), repo_id, "model", str(receipt_path))
