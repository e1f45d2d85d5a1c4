from codeparrot.logs import redirect_to_log
from codeparrot.sources.bigquery import bigquery_export

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    bigquery_export(
        snakemake.output.marker, bucket=p.bucket, prefix=p.prefix, destination_table=p.destination_table,
        project=p.project, location=p.location, maximum_bytes_billed=p.maximum_bytes_billed,
        extension=p.extension, min_size=p.min_size, max_size=p.max_size,
    )
