"""The `gcs` source: download an export of raw shards (`<prefix>/file-*.json.gz`) from a bucket.

Each shard is downloaded byte for byte (no transcoding) into a download cache next to the
results, checked against the object's crc32c (or md5), and only then renamed into place with a
small `.verified.json` record. The download stays a download: its lines are read and checked
once, in the clean stage (codeparrot.clean.records), like every source's, so the manifest's
record counts are null here; a rerun skips shards whose record still matches
the object. The checkpoint's shard folder holds hard links to the cached shards, so Snakemake
may delete and recreate it without downloading again.

Credentials: application-default credentials (`gcloud auth application-default login` or
GOOGLE_APPLICATION_CREDENTIALS). With STORAGE_EMULATOR_HOST set, the client talks to that
emulator anonymously.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import google_crc32c
from tqdm import tqdm

from codeparrot.atomic import atomic_output, commit
from codeparrot.logs import UserError
from codeparrot.raw import shard_entry, write_json, write_manifest
from codeparrot.sources.cloud import CloudError, cloud_errors

SHARD_NAME = re.compile(r"file-\d+\.json\.gz")


class ShardVerificationError(UserError):
    """A downloaded shard does not match its object's checksum."""


def storage_client(project: str | None = None):
    """A google-cloud-storage client; STORAGE_EMULATOR_HOST (if set) makes it anonymous."""
    from google.cloud import storage

    return storage.Client(project=project)


def retry_for(seconds: float):
    """The client's default retry policy (transient errors), given up after `seconds`."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(seconds)


def shard_blobs(client, bucket: str, prefix: str, retry_timeout: float = 600.0) -> list:
    """The export's shard objects under `prefix`, sorted by name (other objects are ignored)."""
    folder = prefix.strip("/") + "/"
    listing = client.list_blobs(bucket, prefix=folder, retry=retry_for(retry_timeout))
    return sorted((b for b in listing if SHARD_NAME.fullmatch(b.name[len(folder):])), key=lambda b: b.name)


def list_shards(client, bucket: str, prefix: str, retry_timeout: float = 600.0) -> list:
    """shard_blobs, which must not be empty."""
    blobs = shard_blobs(client, bucket, prefix, retry_timeout)
    if not blobs:
        raise CloudError(
            f"No shards at gs://{bucket}/{prefix.strip('/')}/file-*.json.gz: check source.gcs.bucket and "
            "source.gcs.prefix, or run the bigquery export first (source.kind: bigquery)."
        )
    return blobs


def file_checksums(path: Path) -> dict[str, str]:
    """crc32c and md5 of a file, base64-encoded as GCS reports them."""
    crc, md5 = google_crc32c.Checksum(), hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc.update(block)
            md5.update(block)
    return {"crc32c": base64.b64encode(crc.digest()).decode(), "md5": base64.b64encode(md5.digest()).decode()}


def verify_checksum(path: Path, blob) -> str:
    """Raise ShardVerificationError unless the file matches the object's crc32c (else md5); return the crc32c."""
    local = file_checksums(path)
    for kind, expected in (("crc32c", blob.crc32c), ("md5", blob.md5_hash)):
        if expected:
            if local[kind] != expected:
                raise ShardVerificationError(
                    f"gs://{blob.bucket.name}/{blob.name}: {kind} mismatch (object says {expected}, "
                    f"downloaded bytes give {local[kind]}). The object is corrupted or changed during "
                    "the download: re-export or re-upload it, then rerun."
                )
            return local["crc32c"]
    raise ShardVerificationError(
        f"gs://{blob.bucket.name}/{blob.name} declares neither crc32c nor md5; cannot verify it.")


def _record_path(cached: Path) -> Path:
    return cached.with_name(cached.name + ".verified.json")


def _already_verified(cached: Path, blob) -> dict | None:
    """The shard's manifest entry if the cache holds exactly this object version, verified."""
    try:
        record = json.loads(_record_path(cached).read_text())
    except (OSError, ValueError):
        return None
    same_object = (record.get("generation") == blob.generation
                   and (not blob.crc32c or record.get("crc32c") == blob.crc32c))
    if same_object and cached.is_file() and cached.stat().st_size == record["entry"]["file_bytes"] == blob.size:
        return record["entry"]
    return None


def fetch_shard(blob, cache_dir: Path, client=None, progress: tqdm | None = None, retry_timeout: float = 600.0) -> dict:
    """Download one shard into the cache (unless already verified there); return its manifest entry."""
    cached = cache_dir / blob.name.rsplit("/", 1)[-1]
    entry = _already_verified(cached, blob)
    if entry is not None:
        if progress is not None:
            progress.update(blob.size)
        return entry
    # A download cut short (killed job, lost connection) resumes from its last byte; the name pins
    # the object version, so a changed object starts afresh.
    part = cached.with_name(f".{cached.name}.part-{blob.generation}")
    for stale in cache_dir.glob(f".{cached.name}.part-*"):
        if stale != part:
            stale.unlink()
    with open(part, "ab") as f:
        have = f.tell()
        if have < blob.size:
            # raw_download: keep the stored gzip bytes even if the object says Content-Encoding: gzip.
            blob.download_to_file(
                f, client=client, start=have, raw_download=True, checksum=None,
                if_generation_match=blob.generation, retry=retry_for(retry_timeout),
            )
    try:
        crc32c = verify_checksum(part, blob)
    except ShardVerificationError:
        part.unlink()
        raise
    commit(part, cached)
    entry = shard_entry(cached, None, None)
    record = {"object": f"gs://{blob.bucket.name}/{blob.name}", "generation": blob.generation, "crc32c": crc32c,
              "entry": entry}
    write_json(_record_path(cached), record)
    if progress is not None:
        progress.update(blob.size)
    return entry


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system: copy instead
        with atomic_output(dst) as tmp:
            shutil.copyfile(src, tmp)


def gcs_download(
    shards_dir: str,
    manifest_path: str,
    bucket: str,
    prefix: str,
    cache_dir: str,
    workers: int = 8,
    project: str | None = None,
    retry_timeout: float = 600.0,
) -> dict:
    """Download and verify every shard of gs://bucket/prefix/file-*.json.gz; write the manifest.

    All shards are attempted; then every corrupted one is named in a single error.
    """
    if not bucket:
        raise ValueError("source.gcs.bucket is not set: name the bucket that holds the export.")
    cache, out = Path(cache_dir), Path(shards_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    resource = f"gs://{bucket}/{prefix.strip('/')}"
    with cloud_errors(resource, "source.gcs.bucket and source.gcs.prefix"):
        blobs = list_shards(storage_client(project), bucket, prefix, retry_timeout)

    local = threading.local()

    def fetch(blob):
        # One client per thread: the HTTP session of a client is not shared between threads.
        if not hasattr(local, "client"):
            local.client = storage_client(project)
        return fetch_shard(blob, cache, local.client, progress, retry_timeout)

    entries, errors = {}, []
    with cloud_errors(resource, "source.gcs.bucket and source.gcs.prefix"), \
            tqdm(total=sum(b.size for b in blobs), unit="B", unit_scale=True, desc=resource) as progress:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(fetch, blob): blob for blob in blobs}
            for future in as_completed(futures):
                try:
                    entry = future.result()
                    entries[entry["file"]] = entry
                except ShardVerificationError as error:
                    errors.append(str(error))
    if errors:
        raise ShardVerificationError(f"{len(errors)} of {len(blobs)} shard(s) failed verification:\n"
                                     + "\n".join(sorted(errors)))
    shards = [entries[name] for name in sorted(entries)]
    for entry in shards:
        _link(cache / entry["file"], out / entry["file"])
    return write_manifest(manifest_path, shards, source="gcs", skipped={})
