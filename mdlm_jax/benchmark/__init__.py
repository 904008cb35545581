"""Standard benchmarks: an lm-evaluation-harness model backed by this library, the
published evaluation recipes (``configs/benchmarks/``) and the ``benchmark`` command.

- ``loading.load``: a workdir of this project or a HF directory -> model, params, config;
- ``generation``: batched, sharded ``generate_until`` through ``diffusion.sampler``;
- ``harness``: the lm-eval ``LM`` (registered as ``mdlm_jax``; needs ``pip install
  -e .[eval]``);
- ``run``: ``python -m mdlm_jax.main benchmark --config configs/benchmarks/<recipe>.py``
  and ``python -m mdlm_jax.benchmark run --model mdlm_jax ...`` (lm-eval's own CLI).
"""
