from codeparrot.arrow import skip_pandas_probe
from codeparrot.clean.near_dedup import band_edges
from codeparrot.logs import redirect_to_log

skip_pandas_probe()
with redirect_to_log(snakemake.log[0]):
    band_edges(list(snakemake.input), snakemake.params.bands, snakemake.output[0])
