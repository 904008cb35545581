#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: the same command on every worker.
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a CONFIG=configs/llada_1b.py WORKDIR=/mnt/gcs/run \
#     bash launch/tpu_pod.sh [--config.key=value ...]
# Each worker runs `jax.distributed.initialize()` (MDLM_DISTRIBUTED=auto), reads its own
# share of every global batch, and writes its shards of each checkpoint to WORKDIR, which
# must be a shared file system path visible to every worker (e.g. a gcsfuse mount).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${CONFIG:?set CONFIG}" "${WORKDIR:?set WORKDIR}"
REPO="${REPO:-\$HOME/mdlm_jax}"
EXTRA="$*"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
  set -e; cd $REPO
  [ -d .venv ] || (python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[tpu]')
  . .venv/bin/activate
  source launch/xla_flags.sh tpu
  MDLM_DISTRIBUTED=auto python -m mdlm_jax.main train --config $CONFIG --workdir $WORKDIR $EXTRA
"
