"""One process of the local multi-process training run that ``test_multihost.py`` starts.

    python tests/multihost_worker.py CONFIG_DIR WORKDIR OUT_JSON

``CONFIG_DIR/config.json`` is the resolved config; the coordinator, process count and id
come from ``MDLM_COORDINATOR`` / ``MDLM_NUM_PROCESSES`` / ``MDLM_PROCESS_ID`` (read by
``parallel.mesh.maybe_initialize_distributed`` inside ``train.run``).
"""

from __future__ import annotations

import json
import sys


def main(config_dir: str, workdir: str, out: str) -> None:
    from mdlm_jax import checkpoint as ckpt
    from mdlm_jax import train

    config = ckpt.read_config(config_dir)
    summary = train.run(config, workdir)

    import jax

    result = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "start_step": summary["start_step"],
        "end_step": summary["end_step"],
        "losses": summary["losses"],
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
