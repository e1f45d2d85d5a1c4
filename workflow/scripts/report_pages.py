from codeparrot.eval.report import build_report
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    i = snakemake.input
    build_report(i.clean_stats, i.near_dedup_stats, i.tokenizer_report, i.model_report, i.metrics,
                 i.validation, i.pass_at_k, out=dict(snakemake.output.items()))
