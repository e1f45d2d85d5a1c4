"""Run a `codeparrot.*` entry point under `accelerate launch` (one process per GPU, or one CPU process).

Training and generation both go through here, so the same rule runs one CPU process on a
laptop and N GPU processes on a cluster node. The child uses this interpreter
(`sys.executable`), so it sees exactly the packages of the environment the rule runs in.
"""

import os
import subprocess
import sys
from collections import deque


def accelerate_command(module: str, args: list[str], num_processes: int, mixed_precision: str = "no",
                       num_machines: int = 1) -> list[str]:
    """The `python -m accelerate.commands.launch ... -m <module> <args>` command line."""
    import torch

    if num_processes < 1 or num_machines < 1:
        raise ValueError(f"num_processes ({num_processes}) and num_machines ({num_machines}) must be >= 1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--num_processes", str(num_processes),
           "--num_machines", str(num_machines),
           "--mixed_precision", mixed_precision,
           "--dynamo_backend", "no"]  # torch.compile is the entry point's choice, not the launcher's
    if not torch.cuda.is_available():
        # All cores this process may use, split among the processes (also silences accelerate's warning).
        threads = max(1, len(os.sched_getaffinity(0)) // num_processes)
        cmd += ["--cpu", "--num_cpu_threads_per_process", str(threads)]
    elif num_processes * num_machines > 1:
        cmd.append("--multi_gpu")
    return cmd + ["-m", module, *map(str, args)]


def run_accelerate(module: str, args: list[str], num_processes: int, mixed_precision: str = "no",
                   num_machines: int = 1, log_path: str | None = None) -> None:
    """Run `module` under accelerate, streaming its output to `log_path` (or this process's stdout).

    Raises RuntimeError with the command and the last lines of output when it fails.
    """
    cmd = accelerate_command(module, args, num_processes, mixed_precision, num_machines)
    tail: deque[str] = deque(maxlen=40)
    log = open(log_path, "a", buffering=1) if log_path else sys.stdout
    try:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              bufsize=1) as proc:
            for line in proc.stdout:
                log.write(line)
                tail.append(line)
            returncode = proc.wait()
    finally:
        if log_path:
            log.close()
    if returncode != 0:
        where = f"full log: {log_path}" if log_path else "full output above"
        raise RuntimeError(
            f"`{module}` failed under accelerate (exit code {returncode}; {where}). Last lines:\n"
            + "".join(tail)
        )
