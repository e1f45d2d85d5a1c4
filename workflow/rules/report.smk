# Stage: report. Tables and plots for `snakemake --report report.html` (codeparrot.eval.report);
# captions in workflow/report/. `rule all` ends here.

REPORT_PAGES = {
    "dataset": "results/report/dataset.html",
    "tokenizer": "results/report/tokenizer.html",
    "training": "results/report/training.html",
    "humaneval": "results/report/humaneval.html",
    "loss": "results/report/loss.svg",
    "throughput": "results/report/throughput.svg",
}


rule report_pages:
    input:
        clean_stats="results/stats/clean/clean.json",
        near_dedup_stats="results/stats/clean/near_dedup.json",
        tokenizer_report="results/reports/tokenizer.json",
        model_report="results/reports/model.json",
        metrics="results/train/metrics.jsonl",
        validation="results/eval/validation_loss.json",
        pass_at_k="results/eval/humaneval_pass_at_k.json",
    output:
        dataset=report(REPORT_PAGES["dataset"], caption="../report/dataset.rst", category="Data"),
        tokenizer=report(REPORT_PAGES["tokenizer"], caption="../report/tokenizer.rst", category="Tokenizer"),
        training=report(REPORT_PAGES["training"], caption="../report/training.rst", category="Training"),
        loss=report(REPORT_PAGES["loss"], caption="../report/loss.rst", category="Training"),
        throughput=report(REPORT_PAGES["throughput"], caption="../report/throughput.rst", category="Training"),
        humaneval=report(REPORT_PAGES["humaneval"], caption="../report/humaneval.rst", category="Evaluation"),
    log:
        "results/logs/report_pages.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/eval.yaml"
    script:
        "../scripts/report_pages.py"
