import os

from codeparrot.logs import redirect_to_log
from codeparrot.model import init_model

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    init_model(
        os.path.dirname(snakemake.input.tokenizer[0]), os.path.dirname(snakemake.output.model[0]),
        snakemake.output.report, preset=p.preset, context_length=p.context_length, seed=p.seed,
        vocab_multiple=p.vocab_multiple, overrides=p.overrides,
    )
