#!/usr/bin/env bash
# Fresh machine -> trained, evaluated and sampled tiny MDLM (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e .
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
WORKDIR="${WORKDIR:-runs/quickstart}"
python -m mdlm_jax.main train --config configs/quickstart.py --workdir "$WORKDIR" "$@"
