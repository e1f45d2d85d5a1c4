import os

from codeparrot.logs import redirect_to_log
from codeparrot.pretokenize import pretokenize

with redirect_to_log(snakemake.log[0]):
    pretokenize(
        snakemake.input.data, os.path.dirname(snakemake.input.tokenizer[0]), snakemake.output.bin,
        batch_rows=snakemake.params.batch_rows, threads=snakemake.threads,
    )
