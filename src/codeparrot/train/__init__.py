"""Pretraining a GPT-2 on code with Accelerate (`python -m codeparrot.train --settings FILE`).

Modules, each importable without side effects:
- `settings`: TrainSettings (defaults from the workflow's schema) and the batch arithmetic;
- `loop`: the training loop, run by `__main__` under accelerate launch;
- `checkpoints`: atomic checkpoints and exact resume;
- `throughput`: FLOPs per token, device peak FLOP/s, tokens/s and MFU;
- `metrics`: metrics.jsonl / TensorBoard / W&B, and `perplexity`;
- `speed`: the GPU speed-ups ("auto" settings, chunked loss, micro-batch probe, FSDP);
- `data`: the token sources (memory-mapped windows or a streamed, packed dataset);
- `launch`: what the rules call (launch under accelerate, push the trained model).
"""
