import os

from codeparrot.logs import redirect_to_log
from codeparrot.tokenizer import train_tokenizer

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    train_tokenizer(
        snakemake.input, os.path.dirname(snakemake.output.tokenizer), vocab_size=p.vocab_size,
        n_files=p.n_files, seed=p.seed, batch_rows=p.batch_rows, min_frequency=p.min_frequency,
        threads=snakemake.threads,
    )
