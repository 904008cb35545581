"""The one entry point.

    python -m mdlm_jax.main train|eval|sample|context --config configs/X.py[:arg] \
        --workdir DIR [--config.group.key=value ...]
    python -m mdlm_jax.main convert --from HF_DIR --to WORKDIR
    python -m mdlm_jax.main compile --config configs/X.py[:arg] [--topology v5p:4x4x4] \
        [--platform gpu] [--what train|sample|context]
    python -m mdlm_jax.main benchmark --config configs/benchmarks/X.py[:task] \
        --config.benchmark.path=DIR
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mdlm_jax import command_line
from mdlm_jax.config_base import base_config, nearest_key

COMMANDS = ("train", "eval", "sample", "context", "convert", "compile", "benchmark")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
flags.DEFINE_string("from", None, "convert: a HuggingFace-format model directory.")
flags.DEFINE_string("to", None, "convert: the workdir to write.")
flags.DEFINE_string("topology", "", "compile: a TPU topology (e.g. v5p:4x4x4), compiled "
                    "through libtpu on any host; default: the local devices.")
flags.DEFINE_string("platform", "", "compile: the local backend to compile for (cpu, gpu, tpu).")
flags.DEFINE_enum("what", "train", ["train", "sample", "context"],
                  "compile: the program to compile (the train step, the sampler, or the "
                  "context suite's scorer).")
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

        if FLAGS.config.model.init_from:
            from mdlm_jax.checkpoint.hf_config import configure_from_directory

            configure_from_directory(FLAGS.config, explicit=explicit_overrides())
        aot.run(FLAGS.config, topology=FLAGS.topology, platform=FLAGS.platform,
                what=FLAGS.what, search=FLAGS.search,
                memory_gib=FLAGS.memory_gib, name=FLAGS["config"].config_filename)
        return
    if command == "benchmark":
        if FLAGS.config is None:
            raise app.UsageError("benchmark needs --config configs/benchmarks/X.py")
        from mdlm_jax.benchmark import run as benchmark

        benchmark.run(FLAGS.config)
        return
    if FLAGS.config is None or not FLAGS.workdir:
        raise app.UsageError(f"{command} needs --config configs/X.py and --workdir DIR")
    config = FLAGS.config
    if config.model.init_from:  # the model directory defines the model, ids and tokenizer
        from mdlm_jax.checkpoint.hf_config import configure_from_directory

        configure_from_directory(config, explicit=explicit_overrides())
    if command == "train":
        from mdlm_jax import train

        train.run(config, FLAGS.workdir)
    elif command == "eval":
        from mdlm_jax import evaluate

        evaluate.run(config, FLAGS.workdir)
    elif command == "context":
        from mdlm_jax.context import harness

        harness.run(config, FLAGS.workdir)
    else:
        from mdlm_jax import sample

        sample.run(config, FLAGS.workdir)


def explicit_overrides() -> dict:
    """The values set on the command line: ``--config.KEY=VALUE`` -> ``{'KEY': VALUE}``.

    absl applies them after the config file's ``get_config``; a config that names a model
    directory checks them against it (``hf_config.configure_from_directory``)."""
    return dict(config_flags.get_override_values(FLAGS["config"]))


def _parse(argv):
    """absl parsing, with config errors as one line naming the nearest valid key."""
    try:
        rest = FLAGS(argv)
    except AttributeError:
        bad = next((a.split("=")[0][len("--config."):] for a in argv[1:]
                    if a.startswith("--config.") and _unknown(a)), None)
        if bad is None:
            raise
        hint = nearest_key(base_config(), bad)
        sys.exit(f"error: unknown config key {bad!r}; did you mean {hint!r}?")
    except flags.Error as e:
        sys.exit(f"error: {_flag_error(e)}")
    path = (FLAGS["config"].config_filename or "").split(":")[0]
    if path and not os.path.isfile(path):
        sys.exit(f"error: --config {path} does not exist; give a config file such as "
                 "configs/quickstart.py (relative to the current directory)")
    return rest


def _flag_error(error) -> str:
    """One line of a flag error; a config file that raised while loading (e.g. an unknown
    ``get_config`` argument) gives its exception's last line, not the embedded traceback."""
    text = str(error)
    if "Traceback" not in text:
        return command_line.one_line(error)
    head = text.split(":", 1)[0]
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    return f"{head}: {last.split(': ', 1)[-1]}"


def _unknown(arg: str) -> bool:
    path = arg.split("=")[0][len("--config."):].split(".")
    node = base_config()
    for part in path:
        if not hasattr(node, "keys") or part not in node:
            return True
        node = node[part]
    return False


def main():
    command_line.run(app.run, _dispatch, flags_parser=_parse)


if __name__ == "__main__":
    main()
