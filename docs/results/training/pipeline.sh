#!/bin/bash
# Real runs for the issue-4 notes (tiny preset models, bigger data). Sequential; resumable (rerun = resume).
set -x
cd /work/runs
export OMP_NUM_THREADS=1 MPR_THREADS=1
M="nice -n 5 /work/main/.venv/bin/mpr"
S="--set max_length=384 --set val_examples=200"
$M train policy --sft --demos demos-train --out pi0 --preset tiny $S --set max_steps=400 --no-progress
$M train world --rollouts demos-train --val-rollouts demos-valid_seen --out world --preset tiny $S --set max_steps=300 --no-progress
$M eval --agent policy --policy pi0 --split valid_seen --limit 60 --workers 1 --json eval-pi0-valid_seen.jsonl --no-progress
$M train iterate --policy pi0 --out iter1 --preset tiny --limit 60 --repeats 2 --workers 1 $S --set max_steps=300 --no-progress
$M eval --agent policy --policy iter1/policy --split valid_seen --limit 60 --workers 1 --json eval-pi1-valid_seen.jsonl --no-progress
echo PIPELINE DONE
