#!/usr/bin/env bash
# The paper's three findings in miniature (issue 15): train the five arms of configs/repro/,
# run the context suite's experiments 1 (locality), 4 (extra masks), 6 (' .' instead of
# masks) and 10 (mask sensitivity) on each, and write the report.
#
#   bash launch/reproduce.sh [cpu|gpu|smoke]     # default cpu
#
# cpu: minutes on a 2-core CPU; gpu: one GPU (about 8 minutes of training on an H200);
# smoke: a few steps of tiny models (the pipeline check of the tests). Environment:
#   RUNS=DIR     the arms' workdirs (default runs/repro_SIZE)
#   OUT=FILE     the report (default docs/REPRODUCTION.md; smoke: RUNS/REPRODUCTION.md)
#   DRY_RUN=1    print the commands, run nothing
# Run it again to resume: an arm whose workdir holds its last step is not trained again,
# finished experiment points are not scored again, and nothing is ever deleted. The wall
# time of every command goes to RUNS/timings.jsonl (read by the report).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${1:-cpu}"
case "$SIZE" in
  cpu | gpu | smoke) ;;
  *) echo "error: unknown size '$SIZE'; use: bash launch/reproduce.sh [cpu|gpu|smoke]" >&2; exit 2 ;;
esac
RUNS="${RUNS:-runs/repro_$SIZE}"
default_out=docs/REPRODUCTION.md
[ "$SIZE" != smoke ] || default_out="$RUNS/REPRODUCTION.md"
OUT="${OUT:-$default_out}"
DRY_RUN="${DRY_RUN:-0}"
ARMS=(mdlm ar mdlm_ma mdlm_ce mdlm_from_ar)  # training order: the fine-tunes start from these
EXPERIMENTS=(locality extra_masks dot_filler mask_sensitivity)
PRESET="model=repro_$SIZE"  # configs/context/suite.py

if [ "$DRY_RUN" != 1 ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || python3 -m venv .venv
  . .venv/bin/activate
  python -m pip install -q --upgrade pip
  if [ "$SIZE" = gpu ]; then python -m pip install -q -e ".[cuda]"; else python -m pip install -q -e .; fi
fi
if [ "$SIZE" = gpu ]; then source launch/xla_flags.sh gpu; else source launch/xla_flags.sh cpu; fi
# Compiled programs are cached across the arms' processes (the same shapes recur).
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$RUNS/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}"

json_string() {  # a JSON string of $1
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

# User + system CPU seconds of this shell's finished children so far, into $cpu_total
# (`times` must run in this shell, not in a $(...) subshell, to see them).
children_cpu() {
  times >"$RUNS/.times"
  cpu_total=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, t, "m")
                   s += t[1] * 60 + t[2] }; printf "%.1f", s }' "$RUNS/.times")
}

# run ARM STAGE CMD...: print, run and time one command (one line in RUNS/timings.jsonl:
# wall and CPU seconds; on a shared machine the CPU time is the steadier measure).
run() {
  local arm=$1 stage=$2
  shift 2
  echo "+ $*"
  [ "$DRY_RUN" = 1 ] && return 0
  local start t0 c0 rc=0
  start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  t0=$(date +%s.%N)
  children_cpu
  c0=$cpu_total
  "$@" || rc=$?
  local seconds cpu status=ran
  seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  children_cpu
  cpu=$(awk -v a="$c0" -v b="$cpu_total" 'BEGIN { printf "%.1f", b - a }')
  [ "$rc" = 0 ] || status="failed (exit $rc)"
  printf '{"arm": %s, "stage": %s, "status": %s, "seconds": %s, "cpu_seconds": %s, "start": %s, "command": %s}\n' \
    "$(json_string "$arm")" "$(json_string "$stage")" "$(json_string "$status")" "$seconds" \
    "$cpu" "$(json_string "$start")" "$(json_string "$*")" >>"$RUNS/timings.jsonl"
  return "$rc"
}

[ "$DRY_RUN" = 1 ] || mkdir -p "$RUNS"
for arm in "${ARMS[@]}"; do
  wd="$RUNS/$arm"
  case "$arm" in
    mdlm_ma | mdlm_ce) arg="$SIZE,from=$RUNS/mdlm" ;;
    mdlm_from_ar) arg="$SIZE,from=$RUNS/ar" ;;
    *) arg="$SIZE" ;;
  esac
  if python -m mdlm_jax.context.reproduction finished "$wd"; then
    echo "= $arm: $wd holds a finished run; not trained again"
  else
    run "$arm" train python -m mdlm_jax.main train --config "configs/repro/$arm.py:$arg" --workdir "$wd"
  fi
  # Each arm is evaluated as soon as it is trained (a stopped run leaves whole arms behind).
  specs=()
  for exp in "${EXPERIMENTS[@]}"; do
    # An AR arm has no mask token: locality, and dot_filler's ' .' series (the suite scores
    # only those on a causal model); the mask experiments are skipped.
    if [ "$arm" = ar ] && [ "$exp" != locality ] && [ "$exp" != dot_filler ]; then continue; fi
    specs+=(--config "configs/context/$exp.py:$PRESET,path=$wd")
  done
  run "$arm" evaluate python -m mdlm_jax.context.reproduction evaluate --workdir "$wd" "${specs[@]}"
done

invocation="bash launch/reproduce.sh $SIZE"
[ "$RUNS" = "runs/repro_$SIZE" ] || invocation="RUNS=$RUNS $invocation"
[ "$OUT" = "$default_out" ] || invocation="OUT=$OUT $invocation"
run report report python -m mdlm_jax.context.reproduction report --runs "$RUNS" --out "$OUT" \
  --size "$SIZE" --command "$invocation"
echo "reproduction ($SIZE) done in $((SECONDS / 60)) min $((SECONDS % 60)) s: $OUT"
