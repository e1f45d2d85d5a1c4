from codeparrot.arrow import skip_pandas_probe
from codeparrot.clean.near_dedup import bucket_signatures
from codeparrot.logs import redirect_to_log

skip_pandas_probe()
with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    bucket_signatures(
        snakemake.input[0], p.bucket, snakemake.output.signatures, snakemake.output.stats, ngram=p.ngram,
        num_perm=p.num_perm, bands=p.bands, rows=p.rows, min_words=p.min_words, seed=p.seed, batch_bytes=p.batch_bytes,
    )
