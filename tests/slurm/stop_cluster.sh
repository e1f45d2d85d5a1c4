#!/usr/bin/env bash
# Stop the daemons tests/slurm/start_cluster.sh started (newest first), by their pid files.
#   tests/slurm/stop_cluster.sh [LIST]   LIST: lines "name pidfile" (default: all it started)
set -uo pipefail

STATE_DIR=${CODEPARROT_SLURM_STATE:-/run/codeparrot-slurm}
LIST=${1:-$STATE_DIR/started}
[[ -f $LIST ]] || exit 0

tac "$LIST" | while read -r name pidfile; do
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || continue
    echo "[stop_cluster] stopping $name (pid $pid)" >&2
    kill -TERM "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
done
[[ $LIST == "$STATE_DIR/started" ]] && rm -f "$LIST"
exit 0
