from codeparrot.logs import redirect_to_log
from codeparrot.train.launch import push_train_model

with redirect_to_log(snakemake.log[0]):
    push_train_model(snakemake.input.model, snakemake.params.repo_id, snakemake.params.branch,
                     snakemake.output.receipt)
