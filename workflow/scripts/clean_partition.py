from codeparrot.arrow import skip_pandas_probe
from codeparrot.clean.partition import partition_shard
from codeparrot.logs import redirect_to_log

skip_pandas_probe()
with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    partition_shard(
        snakemake.input.shard, snakemake.output.partition, snakemake.output.quarantine, snakemake.output.stats,
        num_buckets=p.num_buckets, stat_settings=p.stat_settings, max_line_bytes=p.max_line_bytes,
        batch_bytes=p.batch_bytes,
        decontaminate=p.decontaminate, max_shard_bytes=p.max_shard_bytes, on_corrupt_shard=p.on_corrupt_shard,
    )
