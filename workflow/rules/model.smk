# Stage: model (see docs/architecture.md). A seeded GPT-2 from a preset, saved with the
# tokenizer in one `from_pretrained` folder; optionally pushed to the Hub.

MODEL = config["model"]
INIT_MODEL_FILES = [
    f"results/model/init/{name}"
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    )
]


rule init_model:
    input:
        tokenizer=TOKENIZER_FILES,
    output:
        model=INIT_MODEL_FILES,
        report=report(
            "results/report/model.json", category="3. Training", subcategory="Model", caption="../report/model.rst"
        ),
    params:
        preset=MODEL["preset"],
        context_length=MODEL["context_length"],
        vocab_multiple=MODEL["vocab_multiple"],
        overrides=MODEL["overrides"],
        seed=config["seed"],
    log:
        "results/logs/init_model.log",
    resources:
        # fp32 weights are built in RAM: 4 bytes per parameter (1.5 B -> 6 GB) plus headroom.
        mem_mb={"tiny": 2000, "codeparrot-small": 4000, "codeparrot": 16000}[MODEL["preset"]],
        runtime=20,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/init_model.py"


rule push_model:
    input:
        INIT_MODEL_FILES,
    output:
        "results/model/init_pushed.json",
    params:
        repo_id=MODEL["repo_id"],
    log:
        "results/logs/push_model.log",
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/push_model.py"
