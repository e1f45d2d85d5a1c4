# Stage: tokenizer (see docs/architecture.md). Byte-level BPE trained on the published train
# split (codeparrot.tokenizer) and its report.

TOKENIZER = config["tokenizer"]
TOKENIZER_FILES = ["results/tokenizer/tokenizer.json", "results/tokenizer/tokenizer_config.json"]


rule train_tokenizer:
    input:
        lambda w: dataset_files("train"),
    output:
        tokenizer=TOKENIZER_FILES[0],
        config=TOKENIZER_FILES[1],
    params:
        vocab_size=TOKENIZER["vocab_size"],
        n_files=TOKENIZER["n_files"],
        min_frequency=TOKENIZER["min_frequency"],
        batch_rows=TOKENIZER["batch_rows"],
        seed=config["seed"],
    threads: TOKENIZER["threads"]
    log:
        "results/logs/train_tokenizer.log",
    resources:
        # The trainer keeps every distinct pre-token with its count: memory grows with the files sampled.
        mem_mb=lambda w: 2000 + (TOKENIZER["n_files"] or 1_000_000) // 16,
        runtime=lambda w: 10 + (TOKENIZER["n_files"] or 1_000_000) // 2000,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/train_tokenizer.py"


rule tokenizer_report:
    input:
        tokenizer=TOKENIZER_FILES,
        validation=lambda w: dataset_files("validation"),
    output:
        json=report(
            "results/report/tokenizer.json",
            category="2. Tokenizer",
            subcategory="Summary",
            caption="../report/tokenizer.rst",
        ),
        md=report(
            "results/report/tokenizer.md",
            category="2. Tokenizer",
            subcategory="Summary",
            caption="../report/tokenizer.rst",
        ),
    params:
        max_files=TOKENIZER["report"]["n_files"],
        baseline_roots=TOKENIZER["report"]["baseline_roots"],
        baseline_max_bytes=TOKENIZER["report"]["baseline_max_bytes"],
        seed=config["seed"],
    threads: TOKENIZER["threads"]
    log:
        "results/logs/tokenizer_report.log",
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/tokenizer_report.py"
