"""Memory estimate of a config's train step, without allocating the model.

Builds the config's model with ``jax.eval_shape``, counts parameter / optimizer bytes,
then lowers and compiles the jitted train step ahead of time on abstract inputs and
prints XLA's ``memory_analysis()`` (arguments, outputs, temporaries) for the local
backend::

    python bench/memory_estimate.py --config configs/llada_8b_base_ma.py:ce_tv,path=/m
    python bench/memory_estimate.py --config configs/quickstart.py --no_compile

On a CPU-only machine the compiled figures are the CPU backend's (a guide to a GPU's,
not a measurement of it); ``--no_compile`` prints the analytic part alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdlm_jax.config_base import load_config_file  # noqa: E402
from mdlm_jax.parallel import mesh as mesh_lib  # noqa: E402
from mdlm_jax.parallel import sharding  # noqa: E402
from mdlm_jax.train import make_plan  # noqa: E402

GiB = 1024**3


def tree_bytes(tree) -> int:
    return int(sum(np.prod(x.shape) * jnp.dtype(x.dtype).itemsize
                   for x in jax.tree.leaves(tree)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--no_compile", action="store_true")
    args = parser.parse_args(argv)
    path, _, arg = args.config.partition(":")
    config = load_config_file(path, arg or None)
    notes = []
    if config.model.attention_impl == "cudnn" and jax.devices()[0].platform != "gpu":
        config.unlock()
        config.model.attention_impl = "xla"  # cuDNN attention compiles only for a GPU
        config.lock()
        notes.append("attention compiled with 'xla' (cuDNN needs a GPU)")
    mesh = mesh_lib.make_mesh(config.mesh)
    setup = make_plan(config, mesh)
    accum, b, length = (config.optimizer.grad_accum_steps, config.data.global_batch_size,
                        config.data.seq_len)
    rows = [
        ("parameters", f"{setup.n_params:,}"),
        ("trainable parameters", f"{setup.n_trainable:,}"),
        ("frozen weights", f"{tree_bytes(setup.frozen_shapes) / GiB:.2f} GiB"),
        ("trainable weights", f"{tree_bytes(setup.trainable_shapes) / GiB:.3f} GiB"),
        ("optimizer state", f"{tree_bytes(setup.state_shapes['opt_state']) / GiB:.3f} GiB"),
        ("EMA", f"{tree_bytes(setup.state_shapes['ema'] or {}) / GiB:.3f} GiB"),
        ("micro-batch x accum x length", f"{b} x {accum} x {length}"),
    ]
    if not args.no_compile:
        batch = {"tokens": jax.ShapeDtypeStruct((accum, b, length), jnp.int32,
                                                sharding=setup.batch_sharding),
                 "valid": jax.ShapeDtypeStruct((accum, b, length), jnp.bool_,
                                               sharding=setup.batch_sharding)}
        frozen = (jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                               setup.frozen_shapes, setup.frozen_shardings)
                  if setup.frozen_shapes else None)
        key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
        t0 = time.perf_counter()
        with jax.set_mesh(mesh), sharding.logical_rules(config.mesh.rules):
            compiled = setup.jit_train_step().lower(setup.abstract_state(), batch, frozen,
                                                    key).compile()
        mem = compiled.memory_analysis()
        rows += [
            ("compile time", f"{time.perf_counter() - t0:.1f} s ({jax.devices()[0].platform})"),
            ("arguments", f"{mem.argument_size_in_bytes / GiB:.2f} GiB"),
            ("outputs", f"{mem.output_size_in_bytes / GiB:.2f} GiB"),
            ("temporaries", f"{mem.temp_size_in_bytes / GiB:.2f} GiB"),
            ("peak estimate (args + temps)",
             f"{(mem.argument_size_in_bytes + mem.temp_size_in_bytes) / GiB:.2f} GiB"),
        ]
    width = max(len(k) for k, _ in rows)
    print(f"memory estimate for {args.config} on {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s)")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for note in notes:
        print(f"  note: {note}")


if __name__ == "__main__":
    main()
