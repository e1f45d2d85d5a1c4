from codeparrot.arrow import skip_pandas_probe
from codeparrot.clean.split import split_bucket
from codeparrot.logs import redirect_to_log

skip_pandas_probe()
with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    split_bucket(
        snakemake.input.filtered, snakemake.input.clusters or None, p.bucket,
        {"train": snakemake.output.train, "validation": snakemake.output.validation}, snakemake.output.stats,
        seed=p.seed, validation_fraction=p.validation_fraction, split_by=p.split_by,
    )
