"""Peak memory of one partition job (the clean stage's reader) on a shard with one huge line,
against the same shard without it, measured in the same run (goal: within 1.2x).

The huge line is a JSON record whose content is `--line-mb` MB of code; it is quarantined while
it is read (line_too_long, its first 64 KiB kept), so the job's memory must not depend on it.
Each job runs as its own Python process, as Snakemake runs it; peak RSS is the child's VmHWM.

    PYTHONPATH=src .venv/bin/python bench/bench_line_memory.py [--work /tmp/bench_line_memory] [--line-mb 500]
"""

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = """import json, sys
from codeparrot.arrow import skip_pandas_probe
skip_pandas_probe()
from codeparrot.clean.partition import partition_shard
stats = partition_shard(**json.loads(sys.argv[1]))
print(json.dumps({"vmhwm_kb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]),
                  "quarantined_by_reason": stats["quarantined_by_reason"], "records_out": stats["records_out"]}))"""


def good_lines() -> list[bytes]:
    """Real Python sources of this interpreter's standard library, as raw records."""
    root = Path(json.__file__).resolve().parents[1]
    lines = []
    for path in sorted(root.glob("*.py")):
        content = path.read_text(encoding="utf-8", errors="replace")
        lines.append(json.dumps({"repo_name": "python/cpython", "path": f"Lib/{path.name}", "copies": 1,
                                 "size": len(content.encode()), "content": content, "license": "psf-2.0"}).encode())
    return lines


def write_shard(path: Path, lines: list[bytes], line_mb: int) -> None:
    """The good lines, with (line_mb > 0) one huge record in the middle, streamed to gzip."""
    with gzip.GzipFile(path, "wb", mtime=0, compresslevel=1) as f:
        half = len(lines) // 2
        f.write(b"\n".join(lines[:half]) + b"\n")
        if line_mb:
            f.write(b'{"repo_name": "huge/one", "path": "huge.py", "copies": 1, "size": 0, "license": null, '
                    b'"content": "')
            block = b"x = 1\\n" * (1 << 17)  # 896 KiB of escaped newlines: one JSON string
            for _ in range(line_mb * (1 << 20) // len(block)):
                f.write(block)
            f.write(b'"}\n')
        f.write(b"\n".join(lines[half:]) + b"\n")


def run(shard: Path, work: Path, name: str) -> dict:
    # clean's defaults otherwise (max_line_bytes 8 MiB)
    args = {"raw_path": str(shard), "out_path": str(work / f"{name}.arrow"),
            "quarantine_path": str(work / f"{name}.q.gz"), "stats_path": str(work / f"{name}.json"), "num_buckets": 4}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], check=True, capture_output=True, text=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/bench_line_memory")
    parser.add_argument("--line-mb", type=int, default=500)
    a = parser.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    lines = good_lines()
    results = {}
    for name, line_mb in (("without", 0), (f"with_{a.line_mb}MB_line", a.line_mb)):
        shard = work / f"{name}.json.gz"
        write_shard(shard, lines, line_mb)
        results[name] = run(shard, work, name)
        r = results[name]
        print(f"{name:>20}: shard {shard.stat().st_size / 1e6:8.1f} MB gzipped, "
              f"peak RSS {r['vmhwm_kb'] / 1024:7.1f} MiB, "
              f"{r['seconds']:6.1f} s, kept {r['records_out']}, quarantined {r['quarantined_by_reason']}")
    base, huge = (r["vmhwm_kb"] for r in results.values())
    print(f"ratio with/without: {huge / base:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
