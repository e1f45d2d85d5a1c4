"""Started by `accelerate launch` in tests/test_slurm.py: record what one process sees."""

import json
import os
import socket
import sys

keys = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_NODEID", "SLURM_JOB_ID"]
record = {key: os.environ.get(key) for key in keys} | {"host": socket.gethostname()}
with open(f"{sys.argv[1]}.rank{os.environ['RANK']}.json", "w") as f:
    json.dump(record, f)
