from codeparrot.logs import redirect_to_log
from codeparrot.sources.hub import collect_hub

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    collect_hub(
        snakemake.output.shards, snakemake.output.manifest, path=p.path, split=p.split, extension=p.extension,
        min_size=p.min_size, max_size=p.max_size, max_records=p.max_records, shard_bytes=p.shard_bytes,
    )
