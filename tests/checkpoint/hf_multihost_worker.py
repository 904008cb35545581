"""One process of the two-process sharded HF load that ``test_hf_multihost.py`` starts.

    python tests/checkpoint/hf_multihost_worker.py HF_DIR OUT_JSON

Joins the job through ``MDLM_COORDINATOR`` / ``MDLM_NUM_PROCESSES`` / ``MDLM_PROCESS_ID``,
loads HF_DIR onto a (2, 2, 2) mesh spanning both processes, and compares every shard this
process holds, and the logits, with an unsharded load of the same directory.
"""

from __future__ import annotations

import json
import sys


def main(hf_dir: str, out: str) -> None:
    from mdlm_jax.parallel import mesh as mesh_lib

    mesh_lib.maybe_initialize_distributed()
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from mdlm_jax import config_base
    from mdlm_jax.checkpoint import hf
    from mdlm_jax.parallel import sharding

    cfg = config_base.base_config()
    cfg.mesh.shape = (2, 2, 2)
    mesh = mesh_lib.make_mesh(cfg.mesh)
    _, sharded, apply = hf.load(hf_dir, mesh=mesh, rules=cfg.mesh.rules)
    _, full, _ = hf.load(hf_dir)
    worst, shards, split = 0.0, 0, 0
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(full)):
        ref = np.asarray(b)
        split += int(not a.sharding.is_fully_replicated)
        for shard in a.addressable_shards:
            worst = max(worst, float(np.abs(np.asarray(shard.data) - ref[shard.index]).max()))
            shards += 1
    tokens = np.random.RandomState(0).randint(0, 60, (4, 12)).astype(np.int32)
    replicated = NamedSharding(mesh, PartitionSpec())
    global_tokens = jax.make_array_from_callback(tokens.shape, replicated, lambda i: tokens[i])
    with jax.set_mesh(mesh), sharding.logical_rules(cfg.mesh.rules):
        fn = jax.jit(lambda p, t: apply(p, t), out_shardings=replicated)
        got = np.asarray(fn(sharded, global_tokens).addressable_data(0))
    want = np.asarray(jax.jit(lambda p, t: apply(p, t))(full, jnp.asarray(tokens)))
    with open(out, "w") as f:
        json.dump({"process_index": jax.process_index(), "devices": jax.device_count(),
                   "max_shard_diff": worst, "shards": shards, "split_params": split,
                   "max_logit_diff": float(np.abs(got - want).max())}, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
