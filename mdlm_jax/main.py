"""The one entry point.

    python -m mdlm_jax.main train|eval|sample --config configs/X.py[:arg] --workdir DIR \
        [--config.group.key=value ...]
    python -m mdlm_jax.main convert --from HF_DIR --to WORKDIR
    python -m mdlm_jax.main compile --config configs/X.py[:arg] [--topology v5p:4x4x4] \
        [--platform gpu] [--what train]
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mdlm_jax.config_base import base_config, nearest_key

COMMANDS = ("train", "eval", "sample", "convert", "compile")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_string("from", None, "convert: a HuggingFace-format model directory.")
flags.DEFINE_string("to", None, "convert: the workdir to write.")
flags.DEFINE_string("topology", "", "compile: a TPU topology (e.g. v5p:4x4x4), compiled "
                    "through libtpu on any host; default: the local devices.")
flags.DEFINE_string("platform", "", "compile: the local backend to compile for (cpu, gpu, tpu).")
flags.DEFINE_enum("what", "train", ["train"], "compile: the program to compile.")
flags.DEFINE_bool("search", True, "compile: search the largest micro-batch that fits.")
flags.DEFINE_float("memory_gib", 0.0, "compile: memory per chip to check against (GiB; "
                   "0: the device's own).")
flags.DEFINE_bool("as_diffusion", False, "convert: adapt a causal (AR) model into a "
                  "bidirectional MDLM with the one-position logit shift (the Dream recipe).")


def _dispatch(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m mdlm_jax.main {{{'|'.join(COMMANDS)}}} "
                             "--config configs/X.py --workdir DIR")
    command = argv[1]
    logging.set_verbosity(logging.ERROR)
    if command == "convert":
        if not FLAGS["from"].value or not FLAGS.to:
            raise app.UsageError("convert needs --from HF_DIR --to WORKDIR")
        from mdlm_jax import convert

        convert.run(FLAGS["from"].value, FLAGS.to, as_diffusion=FLAGS.as_diffusion)
        return
    if command == "compile":
        if FLAGS.config is None:
            raise app.UsageError("compile needs --config configs/X.py")
        from mdlm_jax import aot

        aot.run(FLAGS.config, topology=FLAGS.topology, platform=FLAGS.platform,
                what=FLAGS.what, search=FLAGS.search,
                memory_gib=FLAGS.memory_gib, name=FLAGS["config"].config_filename)
        return
    if FLAGS.config is None or not FLAGS.workdir:
        raise app.UsageError(f"{command} needs --config configs/X.py and --workdir DIR")
    config = FLAGS.config
    if command == "train":
        from mdlm_jax import train

        train.run(config, FLAGS.workdir)
    elif command == "eval":
        from mdlm_jax import evaluate

        evaluate.run(config, FLAGS.workdir)
    else:
        from mdlm_jax import sample

        sample.run(config, FLAGS.workdir)


def _parse(argv):
    """absl parsing, with config errors as one line naming the nearest valid key."""
    try:
        return FLAGS(argv)
    except AttributeError:
        bad = next((a.split("=")[0][len("--config."):] for a in argv[1:]
                    if a.startswith("--config.") and _unknown(a)), None)
        if bad is None:
            raise
        hint = nearest_key(base_config(), bad)
        sys.exit(f"error: unknown config key {bad!r}; did you mean {hint!r}?")
    except flags.Error as e:
        sys.exit(f"error: {e}")


def _unknown(arg: str) -> bool:
    path = arg.split("=")[0][len("--config."):].split(".")
    node = base_config()
    for part in path:
        if not hasattr(node, "keys") or part not in node:
            return True
        node = node[part]
    return False


def main():
    try:
        app.run(_dispatch, flags_parser=_parse)
    except KeyboardInterrupt:
        sys.exit(130)
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError) as e:
        if os.environ.get("MDLM_TRACEBACK"):
            raise
        sys.exit(f"error: {e}\n(set MDLM_TRACEBACK=1 for the full traceback)")


if __name__ == "__main__":
    main()
