# Stage: source. Every kind ends in the checkpoint that writes results/raw/shards/file-*.json.gz
# and results/raw/manifest.json; downstream input functions read the shard list from the manifest.

SOURCE = config["source"]


if SOURCE["kind"] == "local":

    checkpoint collect_local:
        output:
            shards=directory("results/raw/shards"),
            manifest="results/raw/manifest.json",
        params:
            roots=SOURCE["local"]["roots"],
            max_files=SOURCE["local"]["max_files"],
            extension=SOURCE["extension"],
            min_size=SOURCE["min_size"],
            max_size=SOURCE["max_size"],
            shard_bytes=SOURCE["shard_bytes"],
        log:
            "results/logs/collect_local.log",
        resources:
            mem_mb=2000,
            runtime=60,
        conda:
            "../../envs/data.yaml"
        script:
            "../scripts/collect_local.py"
