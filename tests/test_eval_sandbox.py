"""HumanEval execution: the sandbox contains what generated code may do; pass@k is the unbiased estimator."""

import json
import math
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from codeparrot.eval.humaneval import (check_program, execute_samples, pass_at_k, read_problems, summarise,
                                       truncate_at_stop)
from codeparrot.eval.sandbox import Limits, capabilities, run_program

LIMITS = Limits(timeout_s=1.0)


@pytest.fixture(scope="module")
def problems():
    return read_problems()


def write_samples(path: Path, samples: list[dict]) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return path


def test_canonical_solutions_pass_and_wrong_completions_fail(problems, tmp_path):
    samples = [{"task_id": p["task_id"], "temperature": 0.2, "sample": 0, "completion": p["canonical_solution"]}
               for p in problems]
    samples += [{"task_id": p["task_id"], "temperature": 0.8, "sample": 0, "completion": "    return None\n"}
                for p in problems]
    summary = execute_samples(write_samples(tmp_path / "s.jsonl", samples), tmp_path / "r.jsonl",
                              tmp_path / "pass.json", ks=[1, 10], workers=2)
    assert summary["problems"] == 164
    assert summary["per_temperature"]["0.2"]["pass@1"] == 1.0
    assert summary["per_temperature"]["0.8"]["pass@1"] == 0.0
    assert "pass@10" not in summary["per_temperature"]["0.2"]  # only 1 sample per problem
    assert summary["best"] == {"pass@1": {"value": 1.0, "temperature": 0.2}}
    results = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["temperature"]) for r in results] == [(s["task_id"], s["temperature"]) for s in samples]
    assert json.loads((tmp_path / "pass.json").read_text()) == summary


def run_attack(problems, body: str, limits: Limits = LIMITS) -> tuple[str, float]:
    """`body` as the completion of HumanEval/0, run in the sandbox; (result, seconds)."""
    completion = "".join(f"    {line}\n" for line in body.strip("\n").splitlines())
    start = time.perf_counter()
    result = run_program(check_program(problems[0], completion), limits)
    return result, time.perf_counter() - start


def test_infinite_loops_time_out(problems):
    for body in ("while True:\n    pass", "return sum(range(10**12))"):  # Python-level and C-level loops
        result, seconds = run_attack(problems, body)
        assert result == "timed out"
        assert seconds < LIMITS.timeout_s + 4


def test_fork_bomb_fails_and_leaves_no_process(problems, tmp_path):
    marker = f"codeparrot-fork-bomb-{os.getpid()}"
    bodies = [
        "import os\nwhile True:\n    os.fork()",
        "import multiprocessing\nwhile True:\n    multiprocessing.Process(target=print).start()",
        f"import subprocess, sys\nwhile True:\n    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])",
        f"import _posixsubprocess, os, sys\nwhile True:\n    os.system('sleep 60 # {marker}')",
    ]
    for body in bodies:
        result, seconds = run_attack(problems, body)
        assert result != "passed" and seconds < LIMITS.timeout_s + 4, (body, result)
    time.sleep(0.2)
    leftovers = [pid for pid in os.listdir("/proc") if pid.isdigit() and marker.encode() in _cmdline(pid)]
    assert not leftovers


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_memory_hog_fails(problems):
    for body in ("x = bytearray(8 << 30)", "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))"):
        result, seconds = run_attack(problems, body, Limits(timeout_s=2.0, memory_mb=512))
        assert result.startswith("failed") or result == "timed out", result
        assert result != "passed"


def test_files_outside_the_sandbox_cannot_be_deleted_or_written(problems, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    bodies = [f"import os\nos.remove({str(victim)!r})",
              f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
              f"open({str(victim)!r}, 'w').write('gone')",
              f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
              f"import pathlib\npathlib.Path({str(victim)!r}).unlink()"]
    for body in bodies:
        result, _ = run_attack(problems, body)
        assert result.startswith("failed"), (body, result)
        assert victim.read_text() == "precious"


def test_user_files_and_ssh_keys_cannot_be_read(problems, tmp_path):
    key = tmp_path / "home" / ".ssh" / "id_rsa"
    key.parent.mkdir(parents=True)
    key.write_text("SECRET")
    real_ssh = os.path.expanduser("~/.ssh/id_rsa")
    for path in (key, real_ssh):
        result, _ = run_attack(problems, f"assert 'SECRET' in open({str(path)!r}).read()\nreturn True")
        assert result.startswith("failed"), result
    result, _ = run_attack(problems, f"import os\nprint(os.listdir({str(key.parent)!r}))")
    assert result.startswith("failed"), result
    # Inside the sandbox HOME is the throw-away directory, not the user's home.
    result, _ = run_attack(problems, f"import os\nassert os.path.expanduser('~') != {os.path.expanduser('~')!r}\n"
                                     "assert False")
    assert "AssertionError" in result


def test_network_is_unreachable(problems):
    connections = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        for body in (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5)",
                     "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=0.5)"):
            result, _ = run_attack(problems, body)
            assert result.startswith("failed"), (body, result)
    finally:
        stop.set()
        thread.join()
        server.close()
    assert connections == []


def test_early_exit_is_not_a_pass(problems):
    for body in ("import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"):
        result, _ = run_attack(problems, body)
        assert result.startswith("failed"), (body, result)


def test_sandbox_layers_on_this_machine():
    caps = capabilities()
    if caps["root"] and caps["unshare"]:
        assert caps["netns"]  # root with unshare must get a network namespace
    assert run_program("import textwrap, json, collections\nassert True") == "passed"


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 2 / 5),
    (5, 2, 2, 1 - math.comb(3, 2) / math.comb(5, 2)),  # 0.7
    (4, 1, 3, 1 - 1 / 4),
    (10, 0, 5, 0.0),
    (3, 3, 1, 1.0),
    (10, 8, 3, 1.0),  # n - c < k: every draw of 3 holds a correct sample
    (200, 7, 100, 1 - math.comb(193, 100) / math.comb(200, 100)),
])
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="n=2"):
        pass_at_k(2, 3, 1)
    with pytest.raises(ValueError, match="k=3"):
        pass_at_k(2, 1, 3)


def test_summary_reports_k_only_where_enough_samples_and_best_temperature():
    results = [{"task_id": f"T/{t}", "temperature": temp, "passed": passed}
               for temp, pattern in ((0.2, [[1, 0], [0, 0]]), (0.8, [[1, 1], [1, 0]]))
               for t, row in enumerate(pattern) for passed in map(bool, row)]
    summary = summarise(results, ks=[1, 2, 10])
    assert summary["per_temperature"]["0.2"]["pass@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert summary["per_temperature"]["0.2"]["pass@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert summary["per_temperature"]["0.8"]["pass@1"] == pytest.approx((1.0 + 0.5) / 2)
    assert "pass@10" not in summary["per_temperature"]["0.8"]
    assert summary["best"]["pass@1"] == {"value": 0.75, "temperature": 0.8}
    assert "pass@10" not in summary["best"]


def test_truncate_at_first_stop_string_of_generated_text():
    assert truncate_at_stop("    return x\n\ndef other():\n    pass\nif x:") == "    return x\n"
    assert truncate_at_stop("    return x\nprint(1)") == "    return x"
    assert truncate_at_stop("    a = 1\n    # comment inside\n    return a\n#end") == \
        "    a = 1\n    # comment inside\n    return a"
    assert truncate_at_stop("    return 1") == "    return 1"  # ran into the token limit: kept


def test_unknown_task_is_a_clear_error(tmp_path):
    samples = write_samples(tmp_path / "s.jsonl", [{"task_id": "HumanEval/999", "temperature": 0.2,
                                                    "completion": "    pass\n"}])
    with pytest.raises(ValueError, match="unknown tasks.*regenerate"):
        execute_samples(samples, tmp_path / "r.jsonl", tmp_path / "p.json", ks=[1])


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="the uid layer needs root and an interpreter every uid can read")
def test_programs_run_as_the_slot_uid_without_groups_when_root(tmp_path):
    """This venv's interpreter lives under /root here, so the sandbox keeps root plus the audit hook;
    a world-readable interpreter gets the unprivileged uid layer, checked with the system Python."""
    src = Path(__file__).resolve().parents[1] / "src"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    script = f"""
import sys
sys.path.insert(0, {str(src)!r})
from codeparrot.eval.sandbox import SANDBOX_UID_BASE, Limits, capabilities, run_program
if not capabilities()["drop_uid"]:
    print("no-uid-layer"); sys.exit(0)
print(run_program("import os\\nassert os.getuid() == os.geteuid() == %d\\nassert os.getgroups() == []"
                  % (SANDBOX_UID_BASE + 3), slot=3))
print(run_program("import os\\nos.remove({str(victim)!r})", slot=3))
print(run_program("while True:\\n    pass", Limits(timeout_s=0.5), slot=3))
"""
    import subprocess

    lines = subprocess.run([SYSTEM_PYTHON, "-I", "-c", script], capture_output=True, text=True, timeout=60,
                           check=True).stdout.splitlines()
    if lines == ["no-uid-layer"]:
        pytest.skip(f"{SYSTEM_PYTHON}'s library is not readable by the sandbox uid")
    assert lines[0] == "passed"
    assert lines[1].startswith("failed") and victim.read_text() == "precious"
    assert lines[2] == "timed out"


def test_a_completion_that_does_not_parse_is_a_failed_sample():
    verdict = run_program("def f(:\n    return 1)\n")
    assert verdict.startswith("failed: SyntaxError"), verdict
