"""Run untrusted generated programs in a sandbox, one process each.

Layers, from the outside in (each one alone stops the tests' attacks; together they are a
defence in depth, not a security boundary for a hostile adversary):

1. A separate interpreter process in its own session, killed (with everything it started)
   after a wall-clock timeout; an empty environment (no credentials in env vars), HOME and
   TMPDIR pointing at a throw-away working directory that is deleted afterwards.
2. When run as root: a fresh network namespace (`unshare --net`, no interfaces at all) and a
   dedicated unprivileged uid per worker slot, so the program cannot read the user's files,
   signal other processes, and every process it leaves behind can be found and killed.
3. Resource limits (setrlimit): address space, CPU seconds, processes, file size, open files.
4. An audit hook (PEP 578, cannot be removed once installed) inside the child: no sockets,
   no new processes or signals, no ctypes, no writes outside the working directory, no reads
   outside it except the interpreter's own library paths.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# One uid per parallel slot: RLIMIT_NPROC then counts only that slot's processes, and leftovers
# are found by uid. Chosen far from the ranges distributions hand out to users and services.
SANDBOX_UID_BASE = 61000
# Interpreter start-up (and unshare) happens before the program's own timer starts.
STARTUP_GRACE_S = 2.0


class SandboxError(RuntimeError):
    """The sandbox itself could not start a program (not a failure of the program)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0
    memory_mb: int = 1024
    max_processes: int = 8
    max_file_mb: int = 16
    max_open_files: int = 64


# Runs inside the child as `python -I -c CHILD config_json`; trusted code, so it is kept short.
CHILD = r'''
import json, os, resource, signal, sys
cfg = json.loads(sys.argv[1])
fd = cfg["result_fd"]
def report(message):
    os.write(fd, message.encode("utf-8", "replace")[:2000])
    os._exit(0)
try:
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    workdir = cfg["workdir"]
    os.chdir(workdir)
    mem = cfg["memory_mb"] << 20
    for limit, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_DATA, mem),
                         (resource.RLIMIT_NPROC, cfg["max_processes"]),
                         (resource.RLIMIT_FSIZE, cfg["max_file_mb"] << 20), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, cfg["max_open_files"])):
        resource.setrlimit(limit, (value, value))
    # SIGXCPU at the soft limit (reported as a timeout), SIGKILL one second later.
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"] + 1))
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
except BaseException as e:
    report(f"sandbox-error: {type(e).__name__}: {e}")

def inside(path, roots):
    if isinstance(path, int) or path is None:
        return True  # an already open descriptor
    path = os.path.realpath(os.fsdecode(path))
    return any(path == root or path.startswith(root + os.sep) for root in roots)

work = [os.path.realpath(workdir)]
readable = work + [os.path.realpath(p) for p in cfg["read_roots"]]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
DENY = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
        "socket.getaddrinfo", "socket.gethostbyname", "os.system", "os.exec", "os.posix_spawn",
        "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen", "os.kill", "os.killpg",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "resource.setrlimit", "resource.prlimit",
        "pty.spawn", "webbrowser.open", "urllib.Request"}
WRITE_PATHS = {"os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown", "os.link",
               "os.symlink", "os.mkdir", "os.utime", "os.chflags", "shutil.rmtree", "shutil.move",
               "shutil.copyfile", "os.chdir"}
READ_PATHS = {"os.listdir", "os.scandir"}

def guard(event, args):
    if event in DENY:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        write = any(c in (mode or "") for c in "wax+") or (mode is None and flags & WRITE_FLAGS)
        if not inside(path, work if write else readable):
            raise PermissionError(f"sandbox: {path!r} is outside the sandbox")
    elif event in WRITE_PATHS or event in READ_PATHS:
        roots = work if event in WRITE_PATHS else readable
        for arg in args:
            if isinstance(arg, (str, bytes, os.PathLike)) and not inside(arg, roots):
                raise PermissionError(f"sandbox: {event} on {arg!r} is not allowed")

sys.addaudithook(guard)

class Timeout(BaseException):
    pass

def alarm(signum, frame):
    raise Timeout()

signal.signal(signal.SIGALRM, alarm)
signal.setitimer(signal.ITIMER_REAL, cfg["timeout_s"])
try:
    # Compiled here: a generated program that does not parse is a failed sample, not a sandbox fault.
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    signal.setitimer(signal.ITIMER_REAL, 0)
    report("passed")
except Timeout:
    report("timed out")
except BaseException as e:
    signal.setitimer(signal.ITIMER_REAL, 0)
    report(f"failed: {type(e).__name__}: {e}"[:500])
'''


@functools.lru_cache(maxsize=1)
def capabilities() -> dict:
    """What this machine allows: a network namespace and a uid drop need root (and `unshare`).

    The uid drop also needs an interpreter whose library that uid can read (a pyenv under /root
    is not): checked by importing a module in the sandbox; without it the guard and limits remain.
    """
    root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    netns = bool(root and unshare and subprocess.run(
        [unshare, "--net", "--", "true"], capture_output=True).returncode == 0)
    caps = {"root": root, "netns": netns, "unshare": unshare, "drop_uid": root}
    if root:
        try:
            caps["drop_uid"] = _run(caps, "import textwrap", Limits(timeout_s=10), slot=0) == "passed"
        except SandboxError:  # e.g. a TMPDIR the uid cannot enter
            caps["drop_uid"] = False
    return caps


def _read_roots() -> list[str]:
    """Where the child may read: the interpreter's prefixes and import path (not the user's files)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update(p for p in sys.path if p and os.path.isdir(p) and p != os.getcwd())
    roots.update(("/dev/null", "/dev/urandom", "/usr/share/zoneinfo"))
    return sorted(roots)


def _kill_uid(uid: int) -> None:
    """Kill every process still running as the slot's uid (escaped its session, e.g. via setsid)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                os.kill(int(pid), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass


def _read_available(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _remove_tree(path: str) -> None:
    def make_writable(func, entry, exc_info):
        os.chmod(os.path.dirname(entry), 0o700)  # a program may have made its directories read-only
        func(entry)

    shutil.rmtree(path, onerror=make_writable)


def run_program(program: str, limits: Limits = Limits(), slot: int = 0) -> str:
    """Run `program` in the sandbox; return "passed", "timed out" or "failed: <why>".

    `slot` picks the dedicated uid when root; two programs must never share a slot at once.
    """
    return _run(capabilities(), program, limits, slot)


def _run(caps: dict, program: str, limits: Limits, slot: int) -> str:
    uid = SANDBOX_UID_BASE + slot if caps["drop_uid"] else None
    workdir = tempfile.mkdtemp(prefix="codeparrot-sandbox-")
    try:
        Path(workdir, "program.py").write_text(program, encoding="utf-8")
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(Path(workdir, "program.py"), uid, uid)
        config = {
            "uid": uid, "workdir": workdir, "read_roots": _read_roots(), "timeout_s": limits.timeout_s,
            "cpu_s": int(limits.timeout_s) + 1, "memory_mb": limits.memory_mb,
            "max_processes": limits.max_processes, "max_file_mb": limits.max_file_mb,
            "max_open_files": limits.max_open_files,
        }
        env = {"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        # The verdict comes on its own pipe: a program that exits early (sys.exit(0)) cannot pass.
        result_r, result_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        config["result_fd"] = result_w
        command = [sys.executable, "-I", "-c", CHILD, json.dumps(config)]
        if caps["netns"]:
            command = [caps["unshare"], "--net", "--"] + command
        try:
            proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr_w, pass_fds=(result_w,),
                                    start_new_session=True)
        finally:
            os.close(result_w)
            os.close(stderr_w)
        try:
            proc.wait(timeout=limits.timeout_s + STARTUP_GRACE_S)
            killed = False
        except subprocess.TimeoutExpired:
            killed = True
        # Whatever the program started lives in its session (or, when root, under its uid).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if uid is not None:
            _kill_uid(uid)
        proc.wait()
        result = _read_available(result_r)
        stderr = _read_available(stderr_r)
    finally:
        _remove_tree(workdir)
    if result.startswith("sandbox-error:"):
        raise SandboxError(f"The sandbox could not run a program: {result}. Check that "
                           f"{tempfile.gettempdir()} is usable by uid {uid} (set TMPDIR otherwise).")
    if result:
        return result
    if killed or proc.returncode == -signal.SIGXCPU:
        return "timed out"
    if stderr.strip():
        # Nothing of the program runs before stderr goes to /dev/null: this is a start-up failure.
        raise SandboxError(f"The sandbox interpreter failed to start: {stderr.strip()[-1000:]}")
    if proc.returncode < 0:
        return f"failed: killed by signal {signal.Signals(-proc.returncode).name}"
    return f"failed: exited with code {proc.returncode} before finishing"


class SlotPool:
    """Hands out worker slots so that concurrent programs never share a sandbox uid."""

    def __init__(self, workers: int):
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(workers):
            self._free.put(slot)

    def run(self, program: str, limits: Limits) -> str:
        slot = self._free.get()
        try:
            return run_program(program, limits, slot)
        finally:
            self._free.put(slot)
