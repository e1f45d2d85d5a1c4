from codeparrot.clean.publish import write_dataset_card
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    i, p = snakemake.input, snakemake.params
    write_dataset_card(
        p.dataset_dir, snakemake.output.card, p.stats_dir, list(i.partition_stats), list(i.bucket_stats),
        list(i.signature_stats), i.near_dedup_stats or None, list(i.split_stats), p.pretty_name, p.settings,
    )
