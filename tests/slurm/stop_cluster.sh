#!/usr/bin/env bash
# Stop exactly the daemons tests/slurm/start_cluster.sh started (newest first), by their pid files.
set -uo pipefail

STATE_DIR=${CODEPARROT_SLURM_STATE:-/run/codeparrot-slurm}
[[ -f $STATE_DIR/started ]] || exit 0

tac "$STATE_DIR/started" | while read -r name pidfile; do
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || continue
    echo "[stop_cluster] stopping $name (pid $pid)" >&2
    kill -TERM "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
done
rm -f "$STATE_DIR/started"
