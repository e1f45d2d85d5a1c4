from pathlib import Path

from codeparrot.train.launch import launch_training

launch_training(
    {**snakemake.params.settings,
     "model_dir": str(Path(snakemake.input.model[0]).parent),  # results/model/init
     "data_dir": str(Path(snakemake.input.data).parent),  # results/tokens or results/dataset
     "final_model_dir": snakemake.output.model, "metrics_path": snakemake.output.metrics},
    num_processes=max(1, snakemake.resources.gpu),
    num_machines=getattr(snakemake.resources, "nodes", 1),  # > 1: one launcher per node (docs/slurm.md)
    log_path=snakemake.log[0],
    threads=snakemake.threads,
)
