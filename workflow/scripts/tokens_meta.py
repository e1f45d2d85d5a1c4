import os

from codeparrot.logs import redirect_to_log
from codeparrot.pretokenize import tokens_meta

with redirect_to_log(snakemake.log[0]):
    tokens_meta(
        os.path.dirname(snakemake.input.tokenizer[0]), os.path.dirname(snakemake.output[0]),
        {split: snakemake.input[split] for split in snakemake.params.splits},
    )
