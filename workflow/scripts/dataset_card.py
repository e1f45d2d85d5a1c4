from pathlib import Path

from codeparrot.clean.publish import dataset_card
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    dataset_card(
        str(Path(o.card).parent), o.card, str(Path(o.stats[0]).parent), list(i.partition_stats), list(i.bucket_stats),
        list(i.signature_stats), i.near_dedup_stats or None, list(i.split_stats), p.pretty_name, p.settings,
    )
