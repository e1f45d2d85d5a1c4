import os

from codeparrot.logs import redirect_to_log
from codeparrot.tokenizer import tokenizer_report

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    tokenizer_report(
        os.path.dirname(snakemake.input.tokenizer[0]), snakemake.input.validation,
        snakemake.output.json, snakemake.output.md, max_files=p.max_files, seed=p.seed,
        baseline_roots=p.baseline_roots, baseline_max_bytes=p.baseline_max_bytes,
        threads=snakemake.threads,
    )
