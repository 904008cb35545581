# XLA flags by platform; `source launch/xla_flags.sh gpu|tpu|cpu|auto`.
case "${1:-auto}" in
  gpu)
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
    export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
    ;;
  tpu)
    export LIBTPU_INIT_ARGS="${LIBTPU_INIT_ARGS:-} --xla_tpu_enable_latency_hiding_scheduler=true"
    ;;
  cpu)
    export JAX_PLATFORMS=cpu
    ;;
  *) ;;
esac
