import os

from codeparrot.logs import redirect_to_log
from codeparrot.pretokenize import pretokenize_file

with redirect_to_log(snakemake.log[0]):
    pretokenize_file(
        snakemake.input.data, os.path.dirname(snakemake.input.tokenizer[0]), snakemake.output.bin,
        batch_rows=snakemake.params.batch_rows, threads=snakemake.threads,
    )
