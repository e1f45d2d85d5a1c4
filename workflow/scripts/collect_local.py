from codeparrot.logs import redirect_to_log
from codeparrot.sources.local import collect_local

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    collect_local(
        snakemake.output.shards, snakemake.output.manifest, roots=p.roots, extension=p.extension,
        min_size=p.min_size, max_size=p.max_size, max_files=p.max_files, shard_bytes=p.shard_bytes,
    )
