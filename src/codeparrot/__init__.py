"""CodeParrot pipeline: the library behind every rule of the Snakemake workflow."""
