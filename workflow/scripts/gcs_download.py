from codeparrot.logs import redirect_to_log
from codeparrot.sources.gcs import download_gcs

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    download_gcs(
        snakemake.output.shards, snakemake.output.manifest, bucket=p.bucket, prefix=p.prefix,
        cache_dir=p.cache, workers=p.workers, project=p.project,
    )
