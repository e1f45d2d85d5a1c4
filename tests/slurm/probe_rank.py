"""Started by `accelerate launch` in tests/test_slurm.py: record what one node's process sees."""

import json
import os
import socket
import sys
from pathlib import Path

record = {key: os.environ.get(key) for key in ("SLURM_NODEID", "SLURM_JOB_ID", "SLURM_STEP_ID")}
record["host"] = socket.gethostname()
# The launcher that started this process, with the rendezvous arguments srun's shell expanded.
record["launcher"] = Path(f"/proc/{os.getppid()}/cmdline").read_text().split("\0")[:-1]
Path(f"{sys.argv[1]}.node{record['SLURM_NODEID']}.json").write_text(json.dumps(record))
