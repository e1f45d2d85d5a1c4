# Stage: report. Pages and plots for `snakemake --report report.html` (codeparrot.report);
# captions in workflow/report/. `rule all` ends here.

# name -> (file, category, subcategory, caption); the category is the report's page group.
REPORT_ITEMS = {
    "dataset": ("dataset.html", "1. Data", "Cleaning", "dataset.rst"),
    "funnel": ("funnel.svg", "1. Data", "Cleaning", "funnel.rst"),
    "filters": ("filters.svg", "1. Data", "Filters", "filters.rst"),
    "tokenizer": ("tokenizer.html", "2. Tokenizer", "Tokenizer", "tokenizer.rst"),
    "chars_per_token": ("chars_per_token.svg", "2. Tokenizer", "Tokenizer", "chars_per_token.rst"),
    "training": ("training.html", "3. Training", "Run", "training.rst"),
    "loss": ("loss.svg", "3. Training", "Curves", "loss.rst"),
    "optimizer": ("optimizer.svg", "3. Training", "Curves", "optimizer.rst"),
    "throughput": ("throughput.svg", "3. Training", "Curves", "throughput.rst"),
    "humaneval": ("humaneval.html", "4. Evaluation", "HumanEval", "humaneval.rst"),
    "pass_rate": ("pass_rate.svg", "4. Evaluation", "HumanEval", "pass_rate.rst"),
    "failures": ("failures.svg", "4. Evaluation", "HumanEval", "failures.rst"),
    "completion": ("completion.html", "4. Evaluation", "Code completion", "completion.rst"),
    "completion_plot": ("completion.svg", "4. Evaluation", "Code completion", "completion.rst"),
}
REPORT_PAGES = {name: f"results/report/{item[0]}" for name, item in REPORT_ITEMS.items()}
REPORT_OUTPUTS = {
    name: report(
        REPORT_PAGES[name],
        caption=f"../report/{caption}",
        category=category,
        subcategory=subcategory,
        # One label: Snakemake turns a second label with two evenly split values into a toggle.
        labels={"item": f"{name.replace('_', ' ')} ({'page' if file.endswith('.html') else 'plot'})"},
    )
    for name, (file, category, subcategory, caption) in REPORT_ITEMS.items()
}


rule report_pages:
    input:
        clean_stats="results/stats/clean/clean.json",
        read_stats="results/stats/clean/read.json",
        filter_stats="results/stats/clean/exact_dedup_and_filters.json",
        split_stats="results/stats/clean/split.json",
        near_dedup_stats="results/stats/clean/near_dedup.json",
        quarantine=lambda wc: expand("results/quarantine/{shard}.jsonl.gz", shard=raw_shard_names()),
        clusters="results/clean/near_dedup/clusters.parquet" if NEAR_DEDUP["enabled"] else [],
        filtered=expand("results/clean/filtered/bucket-{bucket}.parquet", bucket=BUCKETS),
        validation_data=dataset_files("validation"),
        tokenizer=TOKENIZER_FILES[0],
        tokenizer_report="results/report/tokenizer.json",
        model_report="results/report/model.json",
        metrics="results/train/metrics.jsonl",
        validation="results/eval/validation_loss.json",
        pass_at_k="results/eval/humaneval_pass_at_k.json",
        humaneval_results="results/eval/humaneval_results.jsonl",
        humaneval_samples="results/eval/humaneval_samples.jsonl",
        completion="results/eval/completion.json",
    output:
        **REPORT_OUTPUTS,
    params:
        filters=CLEAN_FILTERS,
        source={key: config["source"][key] for key in ("min_size", "max_size")},
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
