#!/bin/sh
# One shard of an optimisation, for batch engines that number their tasks:
# a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX, a Slurm array sets
# SLURM_ARRAY_TASK_ID. SHARDS is the number of tasks. Each shard writes its
# own folder, $RESULTS_DIR/shard-<index>; a task that is retried resumes it.
# Every argument is passed on to `host optimize`. When all shards are done:
#
#   host optimize merge "$RESULTS_DIR"/shard-* --out "$RESULTS_DIR/merged"
set -eu
index="${JOB_COMPLETION_INDEX:-${SLURM_ARRAY_TASK_ID:-}}"
if [ -z "$index" ]; then
  echo "optimize-shard.sh: set JOB_COMPLETION_INDEX (Kubernetes) or SLURM_ARRAY_TASK_ID (Slurm)" >&2
  exit 2
fi
shards="${SHARDS:?optimize-shard.sh: set SHARDS to the number of shards}"
results="${RESULTS_DIR:-runs/shards}"
exec "${STRATA_HOST:-host}" optimize --shard "$index/$shards" --out "$results/shard-$index" --quiet "$@"
