from codeparrot.eval.completion import completion_eval
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    completion_eval({"init": p.init_dir, "trained": snakemake.input.trained}, snakemake.input.validation,
                    snakemake.output[0], seed=p.seed, threads=snakemake.threads, **p.settings)
