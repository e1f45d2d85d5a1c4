from codeparrot.logs import redirect_to_log
from codeparrot.sources.gcs import gcs_download

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    gcs_download(
        snakemake.output.shards, snakemake.output.manifest, bucket=p.bucket, prefix=p.prefix,
        cache_dir=p.cache_dir, workers=p.workers, project=p.project,
    )
