#!/usr/bin/env bash
# The default π₀'s recipe (the candidate for mpr/lm/shipped/policy), from nothing but the ALFWorld games:
#   1. the handcoded expert on the whole train split (demonstrations),
#   2. whole-episode SFT of the tiny from-scratch Llama on the won ones of 1,500 games, with the
#      auxiliary loss on the game's text (--preset cpu: lm_weight 1, max_games 1500) -> RUNS/pi0,
#      the shipped mpr/lm/shipped/policy (valid_unseen 25.4%, valid_seen 34.3%);
#   3. with DAGGER=1, one DAgger round: RUNS/pi0 plays 1,000 train games greedily while the handcoded
#      expert labels every state it visits, and SFT goes on over demonstrations + labels (one epoch)
#      -> RUNS/pi0-dagger1. Measured twice, it hurt (docs/training.md, "The default policy").
# Every step is resumable: rerun the script after a kill and it goes on where it stopped (a finished
# step says so and is skipped). Figures (this machine, 2 cores): docs/training.md, "The default policy".
#
#   bash training/recipes/default-policy.sh [RUNS_DIR]      # default: runs/default-policy
#   mpr models ship RUNS_DIR/pi0 --command "bash training/recipes/default-policy.sh"
set -euo pipefail
RUNS=${1:-runs/default-policy}
export MPR_THREADS=${MPR_THREADS:-2}

mpr rollout --policy expert --split train --limit 3553 --workers 2 --out "$RUNS/demos"
mpr train policy --sft --demos "$RUNS/demos" --out "$RUNS/pi0" --preset cpu --set threads=2
if [[ "${DAGGER:-0}" == 1 ]]; then
    mpr rollout --policy "$RUNS/pi0" --split train --limit 1000 --temperature 0 --expert-labels \
        --workers 2 --threads 1 --out "$RUNS/dagger1"
    mpr train policy --sft --demos "$RUNS/demos" --demos "$RUNS/dagger1" --out "$RUNS/pi0-dagger1" \
        --preset cpu --set threads=2 --set base="$RUNS/pi0" --set epochs=1 --set lr=1e-3 \
        --set warmup_steps=20 --set dagger_branches=4
fi
