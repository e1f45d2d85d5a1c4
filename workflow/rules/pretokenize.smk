# Stage: pretokenize (see docs/architecture.md). The published dataset as packed token shards
# the train stage reads (codeparrot.pretokenize): one job per parquet file, then meta.json.

PRETOKENIZE = config["pretokenize"]


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
        # One shard per published parquet file of each split (dataset_files: see common.smk).
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
