"""lm-eval's own command line with the ``mdlm_jax`` model registered.

    python -m mdlm_jax.benchmark run --model mdlm_jax --model_args path=DIR,steps=256 \\
        --tasks gsm8k --num_fewshot 5

The installed lm-eval (0.4.13) finds models only in its registry and has no plugin
mechanism for other packages, so a plain ``lm_eval --model mdlm_jax`` cannot see this
model; this module registers it and then runs lm-eval's CLI unchanged (also installed as
the ``mdlm-lm-eval`` script).
"""

from __future__ import annotations

import sys


def main():
    from mdlm_jax.benchmark.run import INSTALL_HINT

    try:
        from lm_eval.__main__ import cli_evaluate

        import mdlm_jax.benchmark.harness  # noqa: F401  (registers "mdlm_jax")
    except ImportError:
        sys.exit(f"error: {INSTALL_HINT}")
    cli_evaluate()


if __name__ == "__main__":
    main()
