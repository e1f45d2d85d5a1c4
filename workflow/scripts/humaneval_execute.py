from codeparrot.eval.humaneval import humaneval_execute
from codeparrot.eval.sandbox import Limits
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    limits = Limits(timeout_s=p.timeout_s, memory_mb=p.memory_mb, max_processes=p.max_processes,
                    max_file_mb=p.max_file_mb, max_write_mb=p.max_write_mb)
    humaneval_execute(snakemake.input[0], snakemake.output.results, snakemake.output.summary, ks=p.ks,
                    limits=limits, workers=snakemake.threads, isolation=p.isolation)
