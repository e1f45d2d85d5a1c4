import os

from codeparrot.logs import redirect_to_log
from codeparrot.model import push_model

with redirect_to_log(snakemake.log[0]):
    push_model(os.path.dirname(snakemake.input[0]), snakemake.params.repo_id, snakemake.output[0])
