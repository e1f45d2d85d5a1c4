# Stage: eval. Validation perplexity and HumanEval of the trained model (results/train/model/):
# codeparrot.eval.validation, codeparrot.eval.generate, codeparrot.eval.humaneval (+ sandbox).

EVAL = config["eval"]


rule validation_loss:
    input:
        model="results/train/model",
        tokens_meta="results/tokens/meta.json",
    output:
        "results/eval/validation_loss.json",
    params:
        tokens_dir=lambda wildcards, input: os.path.dirname(input.tokens_meta),
        seq_length=EVAL["validation"]["seq_length"],
        max_sequences=EVAL["validation"]["max_sequences"],
        batch_size=EVAL["validation"]["batch_size"],
    log:
        "results/logs/validation_loss.log",
    threads: 2
    resources:
        gpu=min(1, EVAL["gpus"]),
        mem_mb=EVAL["validation"]["mem_mb"],
        runtime=60,
    conda:
        "../../envs/eval.yaml"
    script:
        "../scripts/validation_loss.py"


rule humaneval_generate:
    input:
        model="results/train/model",
    output:
        "results/eval/humaneval_samples.jsonl",
    params:
        temperatures=EVAL["humaneval"]["temperatures"],
        top_p=EVAL["humaneval"]["top_p"],
        n_samples=EVAL["humaneval"]["n_samples"],
        max_new_tokens=EVAL["humaneval"]["max_new_tokens"],
        batch_size=EVAL["humaneval"]["batch_size"],
        max_problems=EVAL["humaneval"]["max_problems"],
        mixed_precision=EVAL["mixed_precision"],
        seed=config["seed"],
    log:
        "results/logs/humaneval_generate.log",
    threads: max(1, EVAL["gpus"]) * 2
    resources:
        gpu=EVAL["gpus"],
        mem_mb=EVAL["humaneval"]["mem_mb"],
        runtime=EVAL["humaneval"]["runtime_minutes"],
    conda:
        "../../envs/eval.yaml"
    script:
        "../scripts/humaneval_generate.py"


rule humaneval_execute:
    input:
        "results/eval/humaneval_samples.jsonl",
    output:
        results="results/eval/humaneval_results.jsonl",
        summary="results/eval/humaneval_pass_at_k.json",
    params:
        ks=EVAL["humaneval"]["ks"],
        timeout_s=EVAL["execute"]["timeout_s"],
        memory_mb=EVAL["execute"]["memory_mb"],
        max_processes=EVAL["execute"]["max_processes"],
        max_file_mb=EVAL["execute"]["max_file_mb"],
        max_write_mb=EVAL["execute"]["max_write_mb"],
        isolation=EVAL["execute"]["isolation"],
    log:
        "results/logs/humaneval_execute.log",
    threads: EVAL["execute"]["workers"]
    resources:
        mem_mb=lambda wildcards, threads: 500 + threads * EVAL["execute"]["memory_mb"],
        runtime=120,
    conda:
        "../../envs/eval.yaml"
    script:
        "../scripts/humaneval_execute.py"


rule completion_eval:
    input:
        init=INIT_MODEL_FILES,
        trained="results/train/model",
        validation=dataset_files("validation"),
    output:
        "results/eval/completion.json",
    params:
        init_dir=lambda wildcards, input: os.path.dirname(input.init[0]),
        seed=config["seed"],
        n_lines=EVAL["completion"]["n_lines"],
        min_line_chars=EVAL["completion"]["min_line_chars"],
        line_max_new_tokens=EVAL["completion"]["line_max_new_tokens"],
        humaneval_problems=EVAL["completion"]["humaneval_problems"],
        humaneval_max_new_tokens=EVAL["completion"]["humaneval_max_new_tokens"],
        batch_size=EVAL["completion"]["batch_size"],
    log:
        "results/logs/completion_eval.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/eval.yaml"
    script:
        "../scripts/completion_eval.py"
