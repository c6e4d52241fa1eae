#!/bin/bash
# Second half of the real runs: waits for the pi0 SFT (pid given), then evaluates pi0 and runs one
# iteration in parallel (one core each), then evaluates pi1.
set -x
cd /work/runs
export OMP_NUM_THREADS=1 MPR_THREADS=1
M="nice -n 5 /work/main/.venv/bin/mpr"
S="--set max_length=384 --set val_examples=200"
while kill -0 $1 2>/dev/null; do sleep 5; done
$M train policy --sft --demos demos-train --out pi0 --preset tiny $S --set max_steps=400 --no-progress  # no-op if finished
$M eval --agent policy --policy pi0 --split valid_seen --limit 60 --workers 1 --json eval-pi0-valid_seen.jsonl --no-progress > eval-pi0.log 2>&1 &
$M train iterate --policy pi0 --out iter1 --preset tiny --limit 60 --repeats 2 --workers 1 $S --set max_steps=300 --no-progress
wait
$M eval --agent policy --policy iter1/policy --split valid_seen --limit 60 --workers 1 --json eval-pi1-valid_seen.jsonl --no-progress
echo PIPELINE DONE
