# CodeParrot from scratch: raw Python code -> clean dataset -> tokenizer -> GPT-2 -> evaluation.
# `snakemake` runs the embedded default (config/config.yaml) through profiles/default;
# `snakemake --profile profiles/slurm` is the full reproduction (config/codeparrot.yaml).
import os

from snakemake.utils import min_version

# The version pinned in requirements.lock, the one the tests run.
min_version("9.27.1")


# Resolved beside this file, so `snakemake -d <dir>` runs the same default elsewhere.
configfile: os.path.join(workflow.basedir, "config/config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/source.smk"
include: "workflow/rules/clean.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/pretokenize.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"


# `snakemake --report report.html`: this text heads the report; the pages come from report.smk.
report: "workflow/report/workflow.rst"


rule all:
    input:
        "results/raw/manifest.json",
        "results/dataset/README.md",
        "results/report/tokenizer.json",
        "results/report/model.json",
        "results/tokens/meta.json",
        "results/train/model",
        *REPORT_PAGES.values(),
        *hub_push_targets(),
