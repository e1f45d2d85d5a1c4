from codeparrot.eval.completion import completion_eval
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    completion_eval(
        {"init": p.init_dir, "trained": snakemake.input.trained}, snakemake.input.validation, snakemake.output[0],
        seed=p.seed, n_lines=p.n_lines, min_line_chars=p.min_line_chars, line_max_new_tokens=p.line_max_new_tokens,
        humaneval_problems=p.humaneval_problems, humaneval_max_new_tokens=p.humaneval_max_new_tokens,
        batch_size=p.batch_size, threads=snakemake.threads,
    )
