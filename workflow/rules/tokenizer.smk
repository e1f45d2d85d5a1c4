# Stage: tokenizer (see docs/architecture.md). Byte-level BPE trained on the published train
# split, its report, and the packed token shards the train stage reads (one job per parquet file).

TOKENIZER = config["tokenizer"]
PRETOKENIZE = config["pretokenize"]
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
        # The trainer keeps every distinct pre-token with its count: ~60 MB per 1000 files.
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
        json="results/reports/tokenizer.json",
        md=report(
            "results/reports/tokenizer.md",
            category="2. Tokenizer",
            subcategory="Summary",
            caption="../report/tokenizer.rst",
        ),
    params:
        n_files=TOKENIZER["report"]["n_files"],
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


rule pretokenize:
    input:
        data=lambda w: dataset_files(w.split)[int(w.shard)],
        tokenizer=TOKENIZER_FILES,
    output:
        bin="results/tokens/{split}/shard-{shard}.bin",
        idx="results/tokens/{split}/shard-{shard}.idx.npy",
    wildcard_constraints:
        split="train|validation",
        shard=r"\d{5}",
    params:
        batch_rows=PRETOKENIZE["batch_rows"],
    threads: PRETOKENIZE["threads"]
    log:
        "results/logs/pretokenize/{split}-{shard}.log",
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/pretokenize.py"


rule tokens_meta:
    input:
        # One shard per published parquet file of each split (dataset_files: see clean.smk).
        unpack(
            lambda w: {
                split: [f"results/tokens/{split}/shard-{i:05d}.bin" for i in range(len(dataset_files(split)))]
                for split in PRETOKENIZE["splits"]
            }
        ),
        tokenizer=TOKENIZER_FILES,
    output:
        "results/tokens/meta.json",
    params:
        splits=PRETOKENIZE["splits"],
    log:
        "results/logs/tokens_meta.log",
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/tokens_meta.py"
