from codeparrot.logs import redirect_to_log
from codeparrot.report import report_pages

with redirect_to_log(snakemake.log[0]):
    report_pages(dict(snakemake.input.items()), out=dict(snakemake.output.items()),
                 filters=snakemake.params.filters, source=snakemake.params.source)
