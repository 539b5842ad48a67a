#!/usr/bin/env bash
# Certify a test set in N shards as a Slurm array job, then merge the shards.
#
#   sbatch --array=1-8 deploy/slurm/certify-array.sh MODEL.onnx fashion-mnist 0.1 ibp,crown OUTDIR [N]
#   # when every task has finished (or chain it: sbatch --dependency=afterok:<jobid> ...):
#   ironbound merge --out OUTDIR/report.json OUTDIR/shard-*.json
#
# Each array task evaluates the slice `--shard I/N` of the samples (I = SLURM_ARRAY_TASK_ID,
# N = SLURM_ARRAY_TASK_COUNT) and writes OUTDIR/shard-I.json atomically, so a task that fails or
# is preempted leaves no partial file: requeue it (`scontrol requeue <jobid>_<I>`, or
# `#SBATCH --requeue`) and the merge is still exact. `ironbound merge` refuses a missing or
# duplicated shard with a one-line error.
#SBATCH --job-name=ironbound-certify
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=02:00:00
#SBATCH --requeue
#SBATCH --output=ironbound-certify-%A_%a.log
set -euo pipefail
model=${1:?MODEL}; dataset=${2:?DATASET}; eps=${3:?EPS}; methods=${4:?METHODS}; out=${5:?OUTDIR}
# Optional: only the first N samples (all of the split by default).
first=()
[ -n "${6:-}" ] && first=(--n "$6")
: "${SLURM_ARRAY_TASK_ID:?run this with sbatch --array=1-N}"
count=${SLURM_ARRAY_TASK_COUNT:-$SLURM_ARRAY_TASK_MAX}
mkdir -p "$out"
# One rayon thread per allocated core.
export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
exec ironbound certify --model "$model" --dataset "$dataset" --eps "$eps" --method "$methods" \
  "${first[@]}" --shard "$SLURM_ARRAY_TASK_ID/$count" --out "$out/shard-$SLURM_ARRAY_TASK_ID.json"
