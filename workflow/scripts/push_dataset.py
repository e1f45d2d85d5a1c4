from pathlib import Path

from codeparrot.clean.publish import push_dataset
from codeparrot.logs import redirect_to_log

with redirect_to_log(snakemake.log[0]):
    p = snakemake.params
    card = snakemake.input.card
    push_dataset(str(Path(card).parent), card, snakemake.output[0], p.repo_id, p.revision)
