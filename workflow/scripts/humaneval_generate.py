from codeparrot.eval.generate import humaneval_generate

p = snakemake.params
# Output of the accelerate processes goes straight to the log file (run_accelerate tees it).
humaneval_generate(
    snakemake.input.model, snakemake.output[0], temperatures=p.temperatures, top_p=p.top_p, n_samples=p.n_samples,
    max_new_tokens=p.max_new_tokens, batch_size=p.batch_size, seed=p.seed, max_problems=p.max_problems,
    num_processes=max(1, snakemake.resources.gpu),  # one process per GPU of the job
    mixed_precision=p.mixed_precision, log_path=snakemake.log[0],
)
