"""The report pages and `snakemake --report` from the JSON files the stages write."""

import json
import re
from pathlib import Path

import pytest

from codeparrot.eval.humaneval import summarise
from codeparrot.eval.report import build_report
from conftest import run_snakemake

INPUTS = {
    "clean_stats": "results/stats/clean/clean.json",
    "near_dedup_stats": "results/stats/clean/near_dedup.json",
    "tokenizer_report": "results/reports/tokenizer.json",
    "model_report": "results/reports/model.json",
    "metrics": "results/train/metrics.jsonl",
    "validation": "results/eval/validation_loss.json",
    "pass_at_k": "results/eval/humaneval_pass_at_k.json",
}
PAGES = ["dataset.html", "tokenizer.html", "training.html", "humaneval.html", "loss.svg", "throughput.svg"]


def write_stage_outputs(root: Path) -> None:
    """What the clean, tokenizer, model, train and eval stages write, in their formats (small run)."""
    def write(name, data):
        path = root / INPUTS[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))

    write("clean_stats", {"records_in": 1000, "bytes_in": 5_000_000, "quarantined": 3,
                          "quarantined_by_reason": {"invalid_json": 3},
                          "removed_by_reason": {"exact_duplicate": 500, "line_max": 40, "near_duplicate": 57},
                          "kept": 400, "splits": {"train": {"records": 390, "bytes": 900_000},
                                                  "validation": {"records": 10, "bytes": 20_000}}})
    write("near_dedup_stats", {"clusters": 21, "removed": 57, "files": 457, "signed": 450, "skipped_short": 7})
    write("tokenizer_report", {
        "vocab_size": 2048, "code_tokenizer": {"documents": 10, "characters": 31000, "tokens": 10000,
                                               "chars_per_token": 3.1},
        "baseline_tokenizer": {"chars_per_token": 1.9, "training_documents": 12}, "efficiency_ratio": 3.1 / 1.9,
        "keyword_coverage": {"keywords": 35, "single_token": 30, "single_token_after_space": 33, "split": [],
                             "split_after_space": []},
        "longest_tokens": ["        return"]})
    write("model_report", {"preset": "tiny", "n_layer": 2, "n_embd": 64, "n_head": 4, "context_length": 128,
                           "tokenizer_vocab_size": 2000, "model_vocab_size": 2048,
                           "parameters": {"total": 250_123, "embedding": 139_264, "non_embedding": 110_859}})
    rows = []
    for step in range(1, 21):
        rows.append({"step": step, "loss": 7 - step * 0.1, "lr": 1e-3, "grad_norm": 1.0, "tokens": step * 4096,
                     "tokens_per_s": 5000.0 + step, "tflops": 0.01, "mfu": 0.02})
        if step % 10 == 0:
            rows.append({"step": step, "eval_loss": 6.9 - step * 0.08, "perplexity": 100.0})
    (root / INPUTS["metrics"]).parent.mkdir(parents=True, exist_ok=True)
    (root / INPUTS["metrics"]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    write("validation", {"loss": 5.0999, "perplexity": 164.0, "sequences": 64, "seq_length": 128})
    results = [{"task_id": f"HumanEval/{t}", "temperature": temp, "passed": t == 0 and s == 0}
               for t in range(164) for temp in (0.2, 0.8) for s in range(2)]
    write("pass_at_k", {"problems": 164, "samples": len(results), "timed_out": 2, **summarise(results, [1, 10, 100])})


def test_pages_show_the_stage_figures_and_are_reproducible(tmp_path):
    write_stage_outputs(tmp_path)
    inputs = {k: str(tmp_path / v) for k, v in INPUTS.items()}
    out = {Path(p).stem: str(tmp_path / "a" / p) for p in PAGES}
    build_report(**inputs, out=out)
    again = {Path(p).stem: str(tmp_path / "b" / p) for p in PAGES}
    build_report(**inputs, out=again)
    for name in out:
        assert Path(out[name]).read_bytes() == Path(again[name]).read_bytes(), name
    text = {name: Path(path).read_text() for name, path in out.items()}
    assert "1,000" in text["dataset"] and "near_duplicate" in text["dataset"] and "21" in text["dataset"]
    assert "3.1" in text["tokenizer"] and "30/35" in text["tokenizer"]
    assert "250,123" in text["training"] and "164" in text["training"] and "5.1" in text["training"]
    assert "2.0 %" in text["training"] and "5,010" in text["training"]  # mean MFU and tokens/s
    humaneval = text["humaneval"]
    assert "3.80 %" in humaneval and "17.88 %" in humaneval  # published figures beside ours
    assert "0.30 %" in humaneval  # 1 of 2 samples on 1 of 164 problems: pass@1 = 0.5/164
    assert humaneval.count("—") >= 4  # pass@10 and pass@100 need more samples than 2
    for name in ("loss", "throughput"):
        assert text[name].lstrip().startswith("<?xml") and "<svg" in text[name]
        assert not re.search(r"<dc:date>", text[name])


def test_empty_metrics_is_a_clear_error(tmp_path):
    write_stage_outputs(tmp_path)
    (tmp_path / INPUTS["metrics"]).write_text("")
    with pytest.raises(ValueError, match="rerun"):
        build_report(**{k: str(tmp_path / v) for k, v in INPUTS.items()},
                     out={Path(p).stem: str(tmp_path / p) for p in PAGES})


def test_snakemake_report_contains_the_pages(tmp_path):
    write_stage_outputs(tmp_path)
    (tmp_path / "results/reports/tokenizer.md").write_text("# Tokenizer\n")  # marked for the report too
    targets = [f"results/report/{p}" for p in PAGES]
    run_snakemake(["--allowed-rules", "report_pages", "-c1", *targets], workdir=tmp_path)
    run_snakemake(["--allowed-rules", "report_pages", "--report", "report.html", *targets], workdir=tmp_path)
    report = (tmp_path / "report.html").read_text()
    for page in PAGES:
        assert page in report
    assert "of the trained model per sampling temperature" in report  # caption of humaneval.html
    assert "CodeParrot from scratch" in report  # workflow/report/workflow.rst
