"""Run a `codeparrot.*` entry point under `accelerate launch` (one process per GPU, or one CPU process).

Training and generation both go through here, so the same rule runs one CPU process on a
laptop and N GPU processes on a cluster node. The child uses this interpreter
(`sys.executable`), so it sees exactly the packages of the environment the rule runs in.

On several machines (a SLURM job with `nodes > 1`, see docs/slurm.md) `srun` starts one
`accelerate launch` per node; they meet on the job's first node.
"""

import os
import shlex
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
    if num_processes * num_machines > 1:
        # torchrun; without CUDA the entry point's Accelerator(cpu=True) picks gloo (accelerate's
        # `--cpu` would run a single process).
        cmd.append("--multi_gpu")
    elif not torch.cuda.is_available():
        cmd.append("--cpu")
    if not torch.cuda.is_available():
        # OMP_NUM_THREADS if the caller set it, else the cores this process may use split among the
        # processes (passing it also silences accelerate's warning).
        threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, len(os.sched_getaffinity(0)) // num_processes))
        cmd += ["--num_cpu_threads_per_process", str(threads)]
    return cmd + ["-m", module, *map(str, args)]


def srun_per_node(cmd: list[str], num_machines: int) -> list[str]:
    """Wrap an `accelerate_command` so `srun` runs it once on each node of this SLURM job.

    Each node's launcher gets its rank from SLURM (`$SLURM_NODEID`) and all of them rendezvous
    on the first host of `$SLURM_JOB_NODELIST`, at a port derived from the job id (two jobs
    sharing a node do not collide). `--num_processes` stays the total over all nodes.
    """
    if "SLURM_JOB_ID" not in os.environ:
        raise RuntimeError(
            f"Training on {num_machines} machines needs a SLURM job: run the workflow with "
            "`--profile profiles/slurm` (resources nodes, gpu and mpi: srun; docs/slurm.md), "
            "or set nodes to 1."
        )
    if "SLURM_STEP_ID" in os.environ:
        # Without the `mpi` resource the plugin runs the rule inside `srun -n1` on one node,
        # where a second srun cannot reach the other nodes.
        raise RuntimeError(
            f"Training on {num_machines} nodes runs inside a one-node job step. Give the train "
            "rule the resources `mpi: srun` and `tasks_per_node: <GPUs per node>` in the SLURM "
            "profile (profiles/slurm/config.yaml) so it starts one launcher per node itself."
        )
    entry = cmd.index("-m", 3)  # [python, -m, accelerate.commands.launch, <options>, -m, module, args]
    rendezvous = (
        '--machine_rank "$SLURM_NODEID" '
        '--main_process_ip "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)" '
        '--main_process_port "$((20000 + SLURM_JOB_ID % 20000))"'
    )
    per_node = f"{shlex.join(cmd[:entry])} {rendezvous} {shlex.join(cmd[entry:])}"
    return ["srun", f"--nodes={num_machines}", f"--ntasks={num_machines}", "--ntasks-per-node=1",
            "--kill-on-bad-exit=1", "bash", "-c", per_node]


def run_accelerate(module: str, args: list[str], num_processes: int, mixed_precision: str = "no",
                   num_machines: int = 1, log_path: str | None = None) -> None:
    """Run `module` under accelerate, streaming its output to `log_path` (or this process's stdout).

    Raises RuntimeError with the command and the last lines of output when it fails.
    """
    cmd = accelerate_command(module, args, num_processes, mixed_precision, num_machines)
    if num_machines > 1:
        cmd = srun_per_node(cmd, num_machines)
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
