"""The whole DAG end to end on a shrunk embedded default, then rerun-after-config-change plans."""

import html
import json
import re
import zipfile

import pytest
import yaml

from chromium import Chromium, chromium_path
from conftest import ROOT, planned_rules, run_snakemake

TINY = ROOT / "tests/config/tiny.yaml"
# Clicks the innermost element showing exactly `text` (a menu entry of the report); false if none.
CLICK_TEXT = ("(text => { const hits = [...document.querySelectorAll('nav *, #app *')]"
              ".filter(e => e.textContent.trim() === text && e.children.length === 0); "
              "if (!hits.length) return false; hits[0].click(); return true; })")

DATA = {"clean_bucket", "near_dedup_signatures", "near_dedup_band", "near_dedup_clusters"}
PUBLISH = {"clean_split", "dataset_card"}
TOKENIZER = {"train_tokenizer", "tokenizer_report"}
TOKENS = {"pretokenize", "tokens_meta"}
MODEL = {"init_model"}
TRAIN = {"train"}
EVAL = {"validation_loss", "humaneval_generate", "humaneval_execute", "completion_eval"}
REPORT = {"report_pages", "all"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    run_snakemake(["--cores", "2", "--configfile", str(TINY)], workdir=workdir, timeout=1500)
    return workdir


def planned_jobs(workdir, change=None):
    """Rule names that `snakemake -n` plans with `change` (a config overlay) on top of the tiny config."""
    args = ["-n", "--cores", "2", "--configfile", str(TINY)]
    if change:
        overlay = workdir / "change.yaml"
        overlay.write_text(yaml.safe_dump(change))
        args.append(str(overlay))
    return planned_rules(run_snakemake(args, workdir=workdir).stdout)


@pytest.mark.slow
def test_default_dag_runs_end_to_end(finished_run):
    manifest = json.loads((finished_run / "results/raw/manifest.json").read_text())
    assert manifest["records"] == 300
    card = (finished_run / "results/dataset/README.md").read_text()
    assert "configs:" in card
    assert (finished_run / "results/train/model/config.json").exists()
    passk = json.loads((finished_run / "results/eval/humaneval_pass_at_k.json").read_text())
    assert passk, "pass@k results are written"
    assert planned_jobs(finished_run) == set(), "a finished run plans nothing"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["html", "zip"])
def test_report_renders_in_chromium_with_every_page_and_image(finished_run, kind):
    """`snakemake --report` of the test run, opened in headless Chromium: every category and
    subcategory shown, every item viewed (pages in their frame, SVGs as loaded images), no console
    error, no uncaught exception, no failed load."""
    assert chromium_path(), "chromium is missing: `make test-deps` installs it (apt-get install chromium)"
    run_snakemake(["--cores", "1", "--configfile", str(TINY), "--report", f"report.{kind}"], workdir=finished_run)
    if kind == "zip":
        with zipfile.ZipFile(finished_run / "report.zip") as archive:
            archive.extractall(finished_run / "report-zip")
        report = finished_run / "report-zip/report/report.html"
    else:
        report = finished_run / "report.html"
    with Chromium() as browser:
        browser.open(report.as_uri(), "document.readyState === 'complete' && typeof app !== 'undefined'")
        categories = browser.evaluate("categories")
        results = browser.evaluate("results")
        assert {"1. Data", "2. Tokenizer", "3. Training", "4. Evaluation"} <= set(categories)
        assert {f"results/report/{p.name}" for p in (finished_run / "results/report").iterdir()} <= set(results)
        seen = set()
        for category, subcategories in categories.items():
            for subcategory, paths in subcategories.items():
                # Through the menu, as a reader would: the category, then (if it has several) the subcategory.
                browser.open(report.as_uri(), "document.readyState === 'complete' && typeof app !== 'undefined'")
                for entry in [category, subcategory] if len(subcategories) > 1 else [category]:
                    browser.wait(f"{CLICK_TEXT}({json.dumps(entry)})")
                browser.wait(f"document.querySelectorAll('table tr td:last-child a').length === {2 * len(paths)}")
                for row in range(len(paths)):
                    view = f"document.querySelectorAll('table tr td:last-child a')[{2 * row}]"
                    href = browser.evaluate(f"{view}.getAttribute('href')")
                    if href != "#":  # not viewable in the report (markdown, JSON): a download link
                        seen |= {p for p in paths if results[p]["data_uri"] == href}
                        continue
                    shown = json.dumps(browser.evaluate("app.state.resultPath") or None)
                    browser.evaluate(f"{view}.click()")
                    browser.wait(f"(app.state.resultPath || null) !== {shown}")
                    path = browser.evaluate("app.state.resultPath")
                    uri = json.dumps(results[path]["data_uri"])
                    if path.endswith(".svg"):
                        browser.wait(f"[...document.images].some(i => i.getAttribute('src') === {uri} && i.complete "
                                     "&& i.naturalWidth > 100)")
                    elif path.endswith(".html"):
                        frames = "[...document.querySelectorAll('iframe')]"
                        browser.wait(f"{frames}.some(f => f.getAttribute('src') === {uri})")
                        title = re.search(r"<title>(.*?)</title>", (finished_run / path).read_text()).group(1)
                        browser.wait_for_frame_text(html.unescape(title))
                    seen.add(path)
        assert seen == {p for subcategories in categories.values() for paths in subcategories.values() for p in paths}
        assert browser.errors() == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, expected",
    [
        ({"clean": {"split": {"validation_fraction": 0.1}}},
         PUBLISH | TOKENIZER | TOKENS | MODEL | TRAIN | EVAL | REPORT),
        ({"clean": {"near_dedup": {"threshold": 0.9}}},
         DATA - {"clean_bucket"} | PUBLISH | TOKENIZER | TOKENS | MODEL | TRAIN | EVAL | REPORT),
        ({"tokenizer": {"vocab_size": 2048}}, TOKENIZER | TOKENS | MODEL | TRAIN | EVAL | REPORT),
        ({"model": {"context_length": 256}}, MODEL | TRAIN | EVAL | REPORT),
        ({"train": {"learning_rate": 0.002}}, TRAIN | EVAL | REPORT),
        ({"eval": {"humaneval": {"top_p": 0.9}}}, {"humaneval_generate", "humaneval_execute"} | REPORT),
        ({"eval": {"execute": {"timeout_s": 5.0}}}, {"humaneval_execute"} | REPORT),
        ({"eval": {"validation": {"batch_size": 4}}}, {"validation_loss"} | REPORT),
        ({"eval": {"completion": {"n_lines": 8}}}, {"completion_eval"} | REPORT),
    ],
    ids=["split", "near_dedup", "tokenizer", "model", "train", "humaneval", "execute", "validation", "completion"],
)
def test_config_change_reruns_exactly_its_stage_and_downstream(finished_run, change, expected):
    assert planned_jobs(finished_run, change) == expected


@pytest.mark.slow
def test_source_change_reruns_everything_from_the_source(finished_run):
    planned = planned_jobs(finished_run, {"source": {"min_size": 2048}})
    # Jobs after a checkpoint are planned once it has run again; the checkpoint itself must be.
    assert "collect_local" in planned
