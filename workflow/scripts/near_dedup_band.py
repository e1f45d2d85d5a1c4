from codeparrot.clean.near_dedup import band_edges
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    band_edges(list(snakemake.input), snakemake.params.bands, snakemake.output[0])
