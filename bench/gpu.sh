#!/usr/bin/env bash
# Every GPU benchmark on one GPU, in at most 8 minutes, with the results appended to
# docs/BENCHMARKS.md as a dated section (each command and the tables it printed):
#   bash bench/gpu.sh                 # on a host with one (or more; the first is used) GPU
#   DRY_RUN=1 bash bench/gpu.sh       # print the commands and their time limits, run nothing
# Each benchmark runs under its own time limit (the four add up to 480 s); one that runs
# over is recorded as such and the next one starts. Needs pip install -e '.[cuda,test]'
# (PyTorch with CUDA for the --torch comparisons).
set -uo pipefail
cd "$(dirname "$0")/.."
DOC="${DOC:-docs/BENCHMARKS.md}"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
source launch/xla_flags.sh gpu

# name | seconds | command
BENCHES=(
  "llada_1b MFU, sequence 2048, 8 x 2048 tokens per step|130|python bench/train_throughput.py --config configs/llada_1b.py --batch 8 --accum 1 --steps 10 --warmup 2"
  "mdlm_owt_small against the PyTorch MDLM step, 32 x 1024 tokens|130|python bench/train_throughput.py --config configs/mdlm_owt_small.py --batch 32 --steps 10 --warmup 2 --torch"
  "Sampling a LLaDA-1B-shaped model against the PyTorch LLaDA loop, generation length 256, block 32, 256 steps|110|python bench/sample_throughput.py --d_model 2048 --n_layers 12 --n_heads 16 --mlp_dim 5632 --vocab_size 126464 --gen_length 256 --block_length 32 --steps 256 --strategies confidence --kv_caches none,prefix,dual --batch_sizes 1,8 --repeats 2 --torch"
  "LLaDA-8B mask-agnostic LoRA step (rank 64, micro-batch 3 x 1024, two branches), memory and MFU|110|python bench/train_throughput.py --config configs/llada_8b_base_ma.py:ce_tv --accum 1 --steps 3 --warmup 1 --devices 1 --set mesh.shape=(1,1,1)"
)

if [ "${DRY_RUN:-0}" = 1 ]; then
  total=0
  for b in "${BENCHES[@]}"; do
    IFS='|' read -r name secs cmd <<< "$b"
    echo "[$secs s] $name"; echo "    $cmd"; total=$((total + secs))
  done
  echo "total time limit: $total s"
  exit 0
fi

GPU="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
if [ -z "$GPU" ]; then echo "error: no GPU found (nvidia-smi); bench/gpu.sh measures a GPU" >&2; exit 1; fi
SECTION="$(mktemp)"
{
  echo
  echo "## GPU benchmarks (\`bench/gpu.sh\`), $(date -u +%Y-%m-%d), 1 x $GPU"
  echo
  echo "jax $(python -c 'import jax; print(jax.__version__)'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
} > "$SECTION"
for b in "${BENCHES[@]}"; do
  IFS='|' read -r name secs cmd <<< "$b"
  echo "== $name ($secs s at most)"
  LOG="$(mktemp)"
  start=$(date +%s)
  # shellcheck disable=SC2086  # the command is a plain word list
  timeout "$secs" $cmd 2>&1 | tee "$LOG" | grep -v "^WARNING"
  rc=${PIPESTATUS[0]}
  took=$(( $(date +%s) - start ))
  {
    echo; echo "### $name"; echo; echo "    $cmd"; echo
    if [ "$rc" = 124 ]; then echo "Ran over its $secs s limit (no result)."
    elif [ "$rc" != 0 ]; then echo "Failed (exit $rc) after $took s; last lines:"
    else echo "$took s:"; fi
    echo; echo '```'; grep -v -e "^WARNING" -e "^I0000" -e "^E0000" "$LOG" | tail -25; echo '```'
  } >> "$SECTION"
  rm -f "$LOG"
done
cat "$SECTION" >> "$DOC"
rm -f "$SECTION"
echo "appended the results to $DOC"
