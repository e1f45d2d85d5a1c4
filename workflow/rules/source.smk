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


if SOURCE["kind"] == "bigquery":

    rule bigquery_export:
        output:
            marker="results/raw/bigquery_export.json",
        params:
            project=SOURCE["bigquery"]["project"],
            destination_table=SOURCE["bigquery"]["destination_table"],
            location=SOURCE["bigquery"]["location"],
            maximum_bytes_billed=SOURCE["bigquery"]["maximum_bytes_billed"],
            bucket=SOURCE["gcs"]["bucket"],
            prefix=SOURCE["gcs"]["prefix"],
            extension=SOURCE["extension"],
            min_size=SOURCE["min_size"],
            max_size=SOURCE["max_size"],
        log:
            "results/logs/bigquery_export.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=360,
        conda:
            "../../envs/data.yaml"
        script:
            "../scripts/bigquery_export.py"


if SOURCE["kind"] in ("gcs", "bigquery"):

    checkpoint gcs_download:
        input:
            # kind gcs downloads an export someone already made; kind bigquery makes it first.
            export="results/raw/bigquery_export.json" if SOURCE["kind"] == "bigquery" else [],
        output:
            shards=directory("results/raw/shards"),
            manifest="results/raw/manifest.json",
        params:
            bucket=SOURCE["gcs"]["bucket"],
            prefix=SOURCE["gcs"]["prefix"],
            workers=SOURCE["gcs"]["workers"],
            project=SOURCE["bigquery"]["project"],
            # Verified downloads survive a rerun here; the shards folder holds hard links to them.
            cache_dir=f"results/cache/gcs/{SOURCE['gcs']['bucket']}/{SOURCE['gcs']['prefix'].strip('/')}",
        log:
            "results/logs/gcs_download.log",
        threads: 2
        resources:
            mem_mb=2000,
            runtime=720,
        conda:
            "../../envs/data.yaml"
        script:
            "../scripts/gcs_download.py"


if SOURCE["kind"] == "hub":

    checkpoint collect_hub:
        output:
            shards=directory("results/raw/shards"),
            manifest="results/raw/manifest.json",
        params:
            path=SOURCE["hub"]["path"],
            split=SOURCE["hub"]["split"],
            max_records=SOURCE["hub"]["max_records"],
            extension=SOURCE["extension"],
            min_size=SOURCE["min_size"],
            max_size=SOURCE["max_size"],
            shard_bytes=SOURCE["shard_bytes"],
        log:
            "results/logs/collect_hub.log",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=720,
        conda:
            "../../envs/data.yaml"
        script:
            "../scripts/collect_hub.py"
