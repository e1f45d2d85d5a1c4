from codeparrot.clean.publish import push_dataset
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    push_dataset(p.dataset_dir, snakemake.input.card, snakemake.output[0], p.repo_id, p.revision)
