from codeparrot.arrow import skip_pandas_probe
from codeparrot.clean.near_dedup import cluster_duplicates
from codeparrot.logs import redirect_to_log

skip_pandas_probe()
with redirect_to_log(snakemake.log[0]):
    cluster_duplicates(
        list(snakemake.input.edges), list(snakemake.input.signatures), snakemake.output.clusters, snakemake.output.stats
    )
