#!/usr/bin/env bash
# Fresh machine -> trained, evaluated and sampled tiny MDLM (the README's first command).
# Extra arguments go to the train command (e.g. --config.train.num_steps=2000 to continue).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e .
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
WORKDIR="${WORKDIR:-runs/quickstart}"
python -m mdlm_jax.main train --config configs/quickstart.py --workdir "$WORKDIR" "$@"

# The one command to continue: the same arguments, twice the steps (resumes from $WORKDIR).
steps=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["train"]["num_steps"])' \
  "$WORKDIR/config.json")
args=()
for a in "$@"; do
  case "$a" in --config.train.num_steps=*) ;; *) args+=("$a") ;; esac
done
prefix=""
[ "$WORKDIR" = runs/quickstart ] || prefix="WORKDIR=$WORKDIR "
echo "quickstart done in $((SECONDS / 60)) min $((SECONDS % 60)) s; continue training with:"
echo "  ${prefix}bash launch/quickstart.sh ${args[*]+${args[*]} }--config.train.num_steps=$((2 * steps))"
