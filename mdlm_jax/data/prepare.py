"""Build a dataset once: tokenize, pack and write it as ``array_record`` under ``--data_dir``.

Usage::

    python -m mdlm_jax.data.prepare --name openwebtext --files '/data/owt/**/*.txt' \\
        --tokenizer gpt2 --seq_len 1024 --packing wrap --data_dir ~/tensorflow_datasets

``--name`` is a dataset of ``registry.DATASETS`` (``embedded`` | ``text_files`` |
``openwebtext`` | ``prompt_answer``); the flags match the ``data.*`` config keys. An already
prepared dataset is reported and left untouched.
"""

from __future__ import annotations

import argparse
import time

from mdlm_jax import command_line
from mdlm_jax.data import builders, prompt_answer, registry
from mdlm_jax.data.packing import PACKINGS
from mdlm_jax.data.tokenizers import TOKENIZERS


def main(argv: list[str] | None = None) -> None:
    """The command line (module docstring); errors are one line (``command_line``)."""
    command_line.run(_build, argv)


def _build(argv) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="embedded", choices=sorted(registry.DATASETS))
    parser.add_argument("--files", default="", help="; ".join(
        f"{name}: {ds.files}" for name, ds in registry.DATASETS.items() if ds.files))
    parser.add_argument("--tokenizer", default="char", choices=TOKENIZERS)
    parser.add_argument("--tokenizer_path", default="")
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--packing", default="wrap", choices=PACKINGS)
    parser.add_argument("--chat_template", default="", choices=prompt_answer.TEMPLATES)
    parser.add_argument(
        "--data_dir", default="", help="'' : $TFDS_DATA_DIR or ~/tensorflow_datasets"
    )
    args = parser.parse_args(argv)
    cfg = builders.data_config(**vars(args))
    start = time.time()
    builder, built = registry.prepare(cfg)
    sizes = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    verb = f"built in {time.time() - start:.1f}s" if built else "already prepared, left untouched"
    print(f"{cfg.name} ({builder.builder_config.name}): {verb}")
    print(f"  dir: {builder.data_dir}")
    for split, n in sizes.items():
        print(f"  {split}: {n} records of {cfg.seq_len} tokens")


if __name__ == "__main__":
    main()
