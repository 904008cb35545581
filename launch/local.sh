#!/usr/bin/env bash
# One host, all local accelerators (or CPU):
#   bash launch/local.sh train --config configs/quickstart.py --workdir runs/qs
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
source launch/xla_flags.sh "${PLATFORM:-auto}"
python -m mdlm_jax.main "$@"
