"""The bigquery and gcs sources end to end: the project's own rules (export -> extract ->
download) through Snakemake, against local BigQuery and GCS emulators started here.

The emulator tables `bigquery-public-data.github_repos.{files,contents,licenses}` hold real
Python sources (from this interpreter's standard library) and edge rows the CodeParrot SQL must
leave out; the test asserts that exactly the right files arrive, byte for byte.
"""

import bisect
import colorsys
import gzip
import json
import json.decoder
import json.scanner
import keyword
import logging
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from bad_input_corpus import check_clean_outputs, write_corpus
from conftest import run_snakemake
from emulators.services import fake_gcs, local_bigquery
from source_fixtures import real_source

from codeparrot.clean.partition import partition_shard
from codeparrot.raw import read_raw_records
from codeparrot.sources.bigquery import bigquery_client, bigquery_export, check_scan_budget
from codeparrot.sources.cloud import CloudError, cloud_errors
from codeparrot.sources.gcs import ShardVerificationError, gcs_download

BUCKET, PREFIX = "codeparrot-test", "exports/raw"


def github_rows() -> tuple[list[dict], list[dict], list[dict], set]:
    """(files, contents, licenses) rows and the (repo_name, path) pairs the SQL must select."""
    umlauts = "# -*- coding: utf-8 -*-\n# Überprüfung der Farbräume — 色空間 ✓\n" + real_source(colorsys)
    files = [  # (repo, path, content, binary, copies, selected)
        ("psf/cpython", "Lib/textwrap.py", real_source(textwrap), False, 3, True),
        ("psf/cpython", "Lib/json/decoder.py", real_source(json.decoder), False, 1, True),
        ("psf/cpython", "Lib/json/scanner.py", real_source(json.scanner), False, 2, True),
        ("psf/cpython", "Lib/bisect.py", real_source(bisect), False, 1, True),
        ("intl/colors", "colorsys_intl.py", umlauts, False, 1, True),
        ("edge/cases", "exactly_1kib.py", "x = 1\n" + "#" * (1024 - 7) + "\n", False, 1, True),
        ("psf/cpython", "Lib/keyword_binary.py", real_source(keyword), True, 1, False),
        ("edge/cases", "small.py", "print('hi')\n", False, 1, False),
        ("edge/cases", "huge.py", "x = 0\n" * 174763, False, 1, False),  # 1 MiB + 2 bytes
        ("edge/cases", "pkg/__init__.py", "", False, 5, False),
        ("edge/cases", "README.txt", real_source(textwrap), False, 1, False),
        ("no/license", "bisect_copy.py", real_source(bisect), False, 1, False),  # no license row: JOIN drops it
    ]
    file_rows, content_rows, selected = [], [], set()
    for i, (repo, path, content, binary, copies, keep) in enumerate(files):
        file_rows.append({"repo_name": repo, "path": path, "id": f"blob{i:03d}"})
        content_rows.append({
            "id": f"blob{i:03d}", "size": len(content.encode("utf-8")), "content": content,
            "binary": binary, "copies": copies,
        })
        if keep:
            selected.add((repo, path))
    licenses = [
        {"repo_name": "psf/cpython", "license": "python-2.0"},
        {"repo_name": "intl/colors", "license": "mit"},
        {"repo_name": "edge/cases", "license": "apache-2.0"},
    ]
    return file_rows, content_rows, licenses, selected


def seed_github_repos(bigquery_url: str) -> tuple[dict, set]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(project="bigquery-public-data", credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": bigquery_url})
    client.create_dataset("bigquery-public-data.github_repos", exists_ok=True)
    table = "`bigquery-public-data.github_repos.{}`".format
    client.query_and_wait(f"CREATE TABLE {table('files')} (repo_name STRING, path STRING, id STRING)")
    client.query_and_wait(
        f"CREATE TABLE {table('contents')} (id STRING, size INT64, content STRING, binary BOOL, copies INT64)")
    client.query_and_wait(f"CREATE TABLE {table('licenses')} (repo_name STRING, license STRING)")
    files, contents, licenses, selected = github_rows()
    for name, rows in (("files", files), ("contents", contents), ("licenses", licenses)):
        errors = client.insert_rows_json(f"bigquery-public-data.github_repos.{name}", rows)
        assert not errors, errors
    by_id = {c["id"]: c for c in contents}
    license_of = {row["repo_name"]: row["license"] for row in licenses}
    expected = {
        (f["repo_name"], f["path"]): {
            "content": by_id[f["id"]]["content"], "size": by_id[f["id"]]["size"],
            "copies": by_id[f["id"]]["copies"], "license": license_of.get(f["repo_name"]),
        }
        for f in files
    }
    return expected, selected


def run_source(workdir: Path, source: dict, env: dict) -> subprocess.CompletedProcess:
    """The project's source rules through Snakemake, up to the raw data manifest."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "test-config.yaml"
    config.write_text(yaml.safe_dump({"source": source}))
    args = ["--configfile", str(config), "--cores", "2", "results/raw/manifest.json"]
    return run_snakemake(args, workdir=workdir, check=False, timeout=300, env=env)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Seeded emulators, and the bigquery source run once through Snakemake."""
    from google.cloud import storage

    base = tmp_path_factory.mktemp("bigquery")
    with fake_gcs(base) as (gcs_url, gcs_root), local_bigquery(base, gcs_url) as bq_url:
        os.environ["STORAGE_EMULATOR_HOST"] = gcs_url
        try:
            storage.Client().create_bucket(BUCKET)
            expected, selected = seed_github_repos(bq_url)
            env = dict(os.environ, BIGQUERY_EMULATOR_HOST=bq_url)
            workdir = base / "run"
            source = {
                "kind": "bigquery",
                "bigquery": {"project": "test-project", "destination_table": "codeparrot.github_python",
                             "maximum_bytes_billed": 10**9},
                "gcs": {"bucket": BUCKET, "prefix": PREFIX, "workers": 2},
            }
            result = run_source(workdir, source, env)
            assert result.returncode == 0, result.stderr[-5000:]
            yield {"workdir": workdir, "env": env, "gcs_root": gcs_root, "expected": expected,
                   "selected": selected, "base": base}
        finally:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)


def test_exactly_the_selected_files_arrive_byte_for_byte(exported):
    raw = exported["workdir"] / "results/raw"
    manifest = json.loads((raw / "manifest.json").read_text())
    records = [r for shard in manifest["shards"] for r in read_raw_records(raw / "shards" / shard["file"])]
    got = {(r["repo_name"], r["path"]): r for r in records}
    assert len(records) == len(got)
    assert manifest["records"] is None and manifest["content_bytes"] is None  # counted by the clean stage
    assert set(got) == exported["selected"]
    for key, record in got.items():
        want = exported["expected"][key]
        assert record["content"].encode("utf-8") == want["content"].encode("utf-8"), key
        assert (record["size"], record["copies"], record["license"]) == (want["size"], want["copies"], want["license"])


def test_downloaded_shards_are_the_bucket_objects(exported):
    from google.cloud import storage

    raw = exported["workdir"] / "results/raw"
    blobs = list(storage.Client().list_blobs(BUCKET, prefix=PREFIX + "/"))
    assert [b.name for b in blobs] == [f"{PREFIX}/file-000000000000.json.gz"]
    for blob in blobs:
        assert (raw / "shards" / blob.name.rsplit("/", 1)[1]).read_bytes() == blob.download_as_bytes(raw_download=True)
    marker = json.loads((raw / "bigquery_export.json").read_text())
    assert marker["table"] == "test-project.codeparrot.github_python"
    assert marker["uri"] == f"gs://{BUCKET}/{PREFIX}/file-*.json.gz"
    assert marker["rows"] == len(exported["selected"])
    assert marker["query_job_id"] and marker["extract_job_id"]


def test_rerun_skips_verified_shards(exported, tmp_path):
    """A second download with the same cache downloads nothing: the cached shard is untouched."""
    workdir = exported["workdir"]
    cache = next((workdir / "results/cache/gcs").rglob("file-*.json.gz"))
    before = cache.stat()
    manifest = gcs_download(str(tmp_path / "shards"), str(tmp_path / "manifest.json"), BUCKET, PREFIX,
                            cache_dir=str(cache.parent), workers=2, retry_timeout=10)
    after = cache.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert manifest["shards"] == json.loads((workdir / "results/raw/manifest.json").read_text())["shards"]


def test_multi_shard_export_with_string_ints(exported, tmp_path):
    """Real exports write INT64 as strings and span many shards: both survive, bytes unchanged."""
    from google.cloud import storage

    bucket = storage.Client().bucket(BUCKET)
    modules = (("textwrap.py", textwrap), ("bisect.py", bisect), ("colorsys.py", colorsys))
    sources = {name: real_source(module) for name, module in modules}
    for index, (name, content) in enumerate(sorted(sources.items())):
        line = json.dumps({"repo_name": "psf/cpython", "path": name, "copies": "2",
                           "size": str(len(content.encode())), "content": content, "license": "python-2.0"})
        shard = gzip.compress(line.encode() + b"\n", mtime=0)
        bucket.blob(f"multi/file-{index:012d}.json.gz").upload_from_string(shard)
    bucket.blob("multi/_SUCCESS").upload_from_string(b"")  # not a shard: ignored
    manifest = gcs_download(str(tmp_path / "shards"), str(tmp_path / "manifest.json"), BUCKET, "multi",
                            cache_dir=str(tmp_path / "cache"), workers=3, retry_timeout=10)
    assert [s["file"] for s in manifest["shards"]] == [f"file-{i:012d}.json.gz" for i in range(3)]
    records = [r for s in manifest["shards"] for r in read_raw_records(tmp_path / "shards" / s["file"])]
    assert {r["path"]: r["content"] for r in records} == sources
    assert all(isinstance(r["size"], int) and r["copies"] == 2 for r in records)
    for s in manifest["shards"]:
        exported_bytes = bucket.blob(f"multi/{s['file']}").download_as_bytes(raw_download=True)
        assert (tmp_path / "shards" / s["file"]).read_bytes() == exported_bytes


def test_corrupted_shard_fails_the_gcs_rule(exported):
    """Bytes changed in the bucket behind the object's back: the checksum check names the shard."""
    from google.cloud import storage

    bucket = storage.Client().bucket(BUCKET)
    line = json.dumps({"repo_name": "a/b", "path": "x.py", "copies": 1, "size": 4, "content": "x=1\n", "license": None})
    bucket.blob("corrupt/file-000000000000.json.gz").upload_from_string(gzip.compress(line.encode() + b"\n", mtime=0))
    bucket.blob("corrupt/file-000000000001.json.gz").upload_from_string(gzip.compress(line.encode() + b"\n", mtime=0))
    stored = exported["gcs_root"] / BUCKET / "corrupt" / "file-000000000001.json.gz"
    with open(stored, "r+b") as f:  # flip one byte of the stored object; its metadata keeps the old crc32c
        f.seek(12)
        byte = f.read(1)
        f.seek(12)
        f.write(bytes([byte[0] ^ 0xFF]))
    workdir = exported["base"] / "corrupt-run"
    source = {"kind": "gcs", "gcs": {"bucket": BUCKET, "prefix": "corrupt", "workers": 2}}
    result = run_source(workdir, source, exported["env"])
    assert result.returncode != 0
    assert f"gs://{BUCKET}/corrupt/file-000000000001.json.gz: crc32c mismatch" in result.stderr
    assert "file-000000000000.json.gz: crc32c" not in result.stderr
    assert not (workdir / "results/raw/manifest.json").exists()
    assert not list((workdir / "results/cache/gcs").rglob("file-000000000001.json.gz"))
    with pytest.raises(ShardVerificationError, match="file-000000000001.json.gz: crc32c mismatch"):
        gcs_download(str(workdir / "again"), str(workdir / "again.json"), BUCKET, "corrupt",
                     cache_dir=str(workdir / "cache2"), workers=1, retry_timeout=10)


def test_shard_that_is_not_gzipped_json_is_named_by_the_clean_stage(exported, tmp_path):
    """The download verifies bytes only; the one reader (clean stage) names the shard and the remedy."""
    from google.cloud import storage

    storage.Client().bucket(BUCKET).blob("broken/file-000000000000.json.gz").upload_from_string(b"<html>quota</html>")
    gcs_download(str(tmp_path / "s"), str(tmp_path / "m.json"), BUCKET, "broken", cache_dir=str(tmp_path / "c"),
                 workers=1, retry_timeout=10)
    with pytest.raises(ValueError, match="file-000000000000.json.gz: not a readable gzip file.*re-download"):
        partition_shard(str(tmp_path / "s/file-000000000000.json.gz"), str(tmp_path / "p.arrow"),
                        str(tmp_path / "q.gz"), str(tmp_path / "st.json"), num_buckets=1)


def test_damaged_export_is_cleaned_through_the_dag(exported):
    """The bad-input corpus in the bucket: download, then the clean stage quarantines every bad line."""
    from google.cloud import storage

    bucket = storage.Client().bucket(BUCKET)
    local = exported["base"] / "damaged-export"
    expected = write_corpus(local, max_line_bytes=65536)
    for shard in sorted(local.iterdir()):
        bucket.blob(f"damaged/{shard.name}").upload_from_filename(str(shard))
    workdir = exported["base"] / "damaged-run"
    workdir.mkdir()
    config = workdir / "test-config.yaml"
    config.write_text(yaml.safe_dump({
        "source": {"kind": "gcs", "gcs": {"bucket": BUCKET, "prefix": "damaged", "workers": 2},
                   "on_corrupt_shard": "quarantine"},
        "clean": {"num_buckets": 2, "max_line_bytes": 65536}, "publish": {"repo_id": None},
    }))
    run_snakemake(["--configfile", str(config), "--cores", "2", "results/dataset/README.md"], workdir=workdir,
                  timeout=600, env=exported["env"])
    summary = json.loads((workdir / "results/stats/clean/clean.json").read_text())
    check_clean_outputs(expected, workdir / "results/quarantine", summary, workdir / "results/dataset/data")


def test_dry_run_budget_refuses_expensive_queries():
    check_scan_budget(2_600_000_000_000, 3_000_000_000_000)
    with pytest.raises(RuntimeError, match="maximum_bytes_billed"):
        check_scan_budget(2_600_000_000_000, 1_000_000_000_000)


def test_refusal_comes_before_any_query(exported, monkeypatch, caplog):
    """Over budget (the emulator scans "0 bytes", so the budget is set below that): no table is written."""
    from google.api_core.exceptions import NotFound

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", exported["env"]["BIGQUERY_EMULATOR_HOST"])
    caplog.set_level(logging.INFO, logger="codeparrot.sources.bigquery")
    with pytest.raises(RuntimeError, match="would scan 0 bytes, above source.bigquery.maximum_bytes_billed"):
        bigquery_export(str(exported["base"] / "refused.json"), BUCKET, "refused",
                        destination_table="refused.github_python", project="test-project", maximum_bytes_billed=-1)
    assert "dry run: the query would scan 0 bytes" in caplog.text
    with pytest.raises(NotFound):
        bigquery_client("test-project").get_table("test-project.refused.github_python")
    assert not (exported["base"] / "refused.json").exists()


def test_download_cut_short_resumes_from_its_last_byte(exported, tmp_path):
    """A partial download in the cache is continued with a ranged request, not restarted from byte 0."""
    from google.cloud import storage

    data = gzip.compress(b"".join(json.dumps({"repo_name": "a/b", "path": f"{i}.py", "copies": 1, "size": 9,
                                              "content": f"x = {i:04d}\n", "license": None}).encode() + b"\n"
                                  for i in range(2000)), mtime=0)
    blob = storage.Client().bucket(BUCKET).blob("ranged/file-000000000000.json.gz")
    blob.upload_from_string(data)
    blob.reload()
    cache = tmp_path / "cache"
    cache.mkdir()
    part = cache / f".file-000000000000.json.gz.part-{blob.generation}"
    # Wrong bytes in the part already downloaded: only a resumed download keeps them (and fails the checksum).
    part.write_bytes(bytes(b ^ 0xFF for b in data[: len(data) // 2]))
    with pytest.raises(ShardVerificationError, match="crc32c mismatch"):
        gcs_download(str(tmp_path / "s"), str(tmp_path / "m.json"), BUCKET, "ranged", cache_dir=str(cache), workers=1)
    assert not part.exists()  # a mismatch is never resumed again
    part.write_bytes(data[: len(data) // 2])  # the right first half, as a killed download leaves it
    gcs_download(str(tmp_path / "s"), str(tmp_path / "m.json"), BUCKET, "ranged", cache_dir=str(cache), workers=1)
    assert (tmp_path / "s/file-000000000000.json.gz").read_bytes() == data
    assert not list(cache.glob(".*part*"))


def test_missing_bucket_prefix_and_credentials_are_one_line_errors(exported, tmp_path, monkeypatch):
    args = dict(shards_dir=str(tmp_path / "s"), manifest_path=str(tmp_path / "m.json"), cache_dir=str(tmp_path / "c"),
                workers=1)
    with pytest.raises(CloudError,
                       match=r"^gs://no-such-bucket/x: not found .*check source.gcs.bucket and source.gcs.prefix"):
        gcs_download(bucket="no-such-bucket", prefix="x", **args)
    with pytest.raises(CloudError, match=rf"^No shards at gs://{BUCKET}/nothing/here/file-\*.json.gz"):
        gcs_download(bucket=BUCKET, prefix="nothing/here", **args)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    with pytest.raises(CloudError, match="no usable Google Cloud credentials.*gcloud auth application-default login"):
        gcs_download(bucket=BUCKET, prefix="x", **args)


@pytest.mark.parametrize("error, expected", [
    ("Forbidden", "permission denied"),
    ("Forbidden-quota", "refused by quota or budget"),
    ("TooManyRequests", "quota or rate limit exceeded"),
])
def test_refusals_become_one_line_errors(error, expected):
    from google.api_core import exceptions as api

    kind, _, quota = error.partition("-")
    errors = [{"reason": "quotaExceeded", "message": "Quota exceeded"}] if quota else []
    with pytest.raises(CloudError, match=f"^gs://b/p: {expected}"):
        with cloud_errors("gs://b/p", "source.gcs.bucket"):
            raise getattr(api, kind)("GET https://storage.googleapis.com/...: denied", errors=errors)


def test_one_line_error_is_the_headline_of_a_failed_rule(exported):
    result = run_source(exported["base"] / "nobucket-run",
                        {"kind": "gcs", "gcs": {"bucket": "no-such-bucket", "prefix": "x"}}, exported["env"])
    assert result.returncode != 0
    assert "ERROR: gs://no-such-bucket/x: not found" in result.stderr and "Traceback" not in result.stderr
    log = (exported["base"] / "nobucket-run/results/logs/gcs_download.log").read_text()
    assert log.strip().splitlines()[-1].startswith("ERROR: gs://no-such-bucket/x: not found")
