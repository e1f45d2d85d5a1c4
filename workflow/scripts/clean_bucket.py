from codeparrot.arrow import skip_pandas_probe
from codeparrot.clean.bucket import clean_bucket
from codeparrot.logs import redirect_to_log

skip_pandas_probe()
with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    clean_bucket(
        list(snakemake.input.partitions), p.bucket, snakemake.output.filtered, snakemake.output.removed,
        snakemake.output.stats,
        seed=p.seed, filters=p.filters, license=p.license,
    )
