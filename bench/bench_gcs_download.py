"""GCS download MB/s with N parallel workers against 1 worker (the baseline), and a rerun from the cache.

    .venv/bin/python bench/bench_gcs_download.py [--shards 8] [--mb 4] [--workers 1 4 8]

Shards: gzipped raw shards of real Python files of this environment (site-packages, sorted),
uploaded to a local fake-gcs-server. Each download writes, verifies (crc32c) and counts every
shard as the `gcs_download` rule does. On loopback the network is not the bottleneck, so the
figures measure the client, checksum and counting work; against real GCS parallelism also hides
per-request latency.
"""

import argparse
import gzip
import json
import os
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from emulators.services import fake_gcs  # noqa: E402

from codeparrot.sources.gcs import gcs_download, storage_client  # noqa: E402


def shard_payloads(shards: int, megabytes: float) -> list[bytes]:
    """`shards` gzipped raw shards of about `megabytes` of content each."""
    files = (p for p in sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py")) if p.stat().st_size >= 1024)
    payloads = []
    for _ in range(shards):
        lines, size = [], 0
        while size < megabytes * 1e6:
            path = next(files)
            try:
                content = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            record = {"repo_name": path.parent.name, "path": path.name, "copies": "1",
                      "size": str(len(content.encode())), "content": content, "license": None}
            lines.append(json.dumps(record, ensure_ascii=False))
            size += len(content)
        payloads.append(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return payloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--mb", type=float, default=4.0, help="content MB per shard")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fake_gcs(Path(tmp)) as (url, _):
        os.environ["STORAGE_EMULATOR_HOST"] = url
        bucket = storage_client().create_bucket("bench")
        payloads = shard_payloads(args.shards, args.mb)
        for i, data in enumerate(payloads):
            bucket.blob(f"raw/file-{i:012d}.json.gz").upload_from_string(data)
        total_mb = sum(map(len, payloads)) / 1e6
        print(f"{args.shards} shards, {total_mb:.1f} MB gzipped, {args.shards * args.mb:.0f} MB content")
        # Warm-up (imports, auth, connection set-up) so that the first timed run is not penalised.
        gcs_download(str(Path(tmp) / "warm/shards"), str(Path(tmp) / "warm/m.json"), "bench", "raw",
                     str(Path(tmp) / "warm/cache"))
        baseline = None
        for workers in args.workers:
            run = Path(tmp) / f"w{workers}"
            start = time.perf_counter()
            gcs_download(str(run / "shards"), str(run / "manifest.json"), "bench", "raw", str(run / "cache"),
                         workers=workers)
            seconds = time.perf_counter() - start
            baseline = baseline or seconds
            print(f"workers={workers:2d}: {seconds:6.2f} s  {total_mb / seconds:7.1f} MB/s  "
                  f"x{baseline / seconds:.2f} vs workers={args.workers[0]}")
        start = time.perf_counter()
        gcs_download(str(run / "shards2"), str(run / "manifest2.json"), "bench", "raw", str(run / "cache"),
                     workers=args.workers[-1])
        print(f"rerun (all shards already verified in the cache): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
