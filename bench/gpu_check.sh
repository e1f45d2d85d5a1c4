#!/usr/bin/env bash
# The GPU figures of issue 13 in one run on one GPU (about 8 minutes on an H200; every part is
# time-boxed so the whole stays under that):
#   1. codeparrot-small, seq 1024: our loop beside the bare loop (same optimisations), tokens/s,
#      MFU against the data-sheet peak, peak memory, and the published schedule's time on 16 GPUs;
#   2. codeparrot (1.5B), seq 1024, one GPU, activation checkpointing: our loop's tokens/s, MFU,
#      peak memory (killed once timed: no 18 GB checkpoint is written);
#   3. the bare loop with the plain loss (whole-batch logits), to compare with the chunked loss of 1;
#   4. our loop with the micro-batch probe for the published 192 sequences per step.
# Needs the CUDA build of torch==2.13.0 in $PYTHON (default .venv/bin/python).
#
#   bash bench/gpu_check.sh 2>&1 | tee gpu_check.log
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
WORK=${WORK:-$(mktemp -d -t gpu-check-XXXX)}
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch ' + torch.__version__ + ': run this on a GPU machine with the CUDA build of torch')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

part() {  # part <seconds> <title> <bench_train.py arguments...>
    local seconds=$1 title=$2
    shift 2
    echo
    echo "== $title (at most ${seconds}s)"
    timeout --kill-after=10 "$seconds" "$PY" bench/bench_train.py "$@" 2>&1 | grep -v -e "it/s]" -e "^\s*$"
    [ "${PIPESTATUS[0]}" = 124 ] && echo "(cut at ${seconds}s: raise it or lower --steps)"
}

SMALL=(--preset codeparrot-small --seq 1024 --vocab 32768 --keep "$WORK/small")
part 150 "codeparrot-small, seq 1024, batch 32: our loop vs bare loop, chunked loss" \
    "${SMALL[@]}" --batch 32 --steps 60 --loaders tokens
part 210 "codeparrot 1.5B, seq 1024, batch 8, one GPU, activation checkpointing" \
    --preset codeparrot --seq 1024 --vocab 32768 --keep "$WORK/xl" --batch 8 --steps 20 \
    --gradient-checkpointing --loops ours --stop-after-timing --loaders
part 60 "codeparrot-small, seq 1024, batch 32: bare loop with the plain loss (compare with the chunked one above)" \
    "${SMALL[@]}" --batch 32 --steps 60 --loops bare --loss plain --loaders
part 60 "codeparrot-small, seq 1024: our loop, micro-batch probed for 192 sequences per step" \
    "${SMALL[@]}" --batch 12 --global-batch 192 --steps 10 --loops ours --stop-after-timing --loaders
echo
echo "inputs and runs kept in $WORK"
