#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: the same command on every worker.
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a CONFIG=configs/llada_1b.py WORKDIR=/mnt/gcs/run \
#     bash launch/tpu_pod.sh [--config.key=value ...]
# Each worker runs `jax.distributed.initialize()` (MDLM_DISTRIBUTED=auto), reads its own
# share of every global batch, and writes its shards of each checkpoint to WORKDIR, which
# must be a shared file system path visible to every worker (e.g. a gcsfuse mount).
# DRY_RUN=1 prints the gcloud command and the script every worker would run, runs nothing.
# Before renting the slice, check that the config fits it:
#   python -m mdlm_jax.main compile --config "$CONFIG" --topology v5p:4x4x4
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${CONFIG:?set CONFIG}" "${WORKDIR:?set WORKDIR}"
REPO="${REPO:-\$HOME/mdlm_jax}"
EXTRA=""
for arg in "$@"; do EXTRA+=" $(printf '%q' "$arg")"; done
WORKER_SCRIPT="
  set -e; cd $REPO
  [ -d .venv ] || (python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[tpu]')
  . .venv/bin/activate
  source launch/xla_flags.sh tpu
  MDLM_DISTRIBUTED=auto python -m mdlm_jax.main train --config $(printf '%q' "$CONFIG") --workdir $(printf '%q' "$WORKDIR")$EXTRA
"
CMD=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$WORKER_SCRIPT")
if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "dry run: on this host:"
  printf ' %q' "${CMD[@]:0:9}"; echo " --command <the script below>"
  echo "dry run: on every worker of $TPU_NAME (--worker=all):"
  printf '%s\n' "$WORKER_SCRIPT"
  exit 0
fi
"${CMD[@]}"
