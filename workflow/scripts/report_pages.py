from codeparrot.eval.report import build_report
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    build_report(dict(snakemake.input.items()), out=dict(snakemake.output.items()),
                 filters=snakemake.params.filters, source=snakemake.params.source)
