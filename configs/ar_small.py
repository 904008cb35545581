"""The autoregressive baseline of ``mdlm_owt_small``: the same DiT body, causal, next-token NLL.

Same data (OpenWebText, GPT-2 BPE, 1024 tokens wrapped across documents), optimizer and
schedule as ``configs/mdlm_owt_small.py``; the DiT keeps its (unused, zero-conditioned)
adaLN layers so both models have exactly the same parameters. Prepare the data as described
there, then::

    PLATFORM=gpu bash launch/local.sh train --config configs/ar_small.py \\
        --workdir runs/ar_small \\
        --config.data.files='/data/owt/**/*.txt' --config.data.data_dir=/data/tfds

Throughput::

    python bench/train_throughput.py --config configs/ar_small.py --batch 32

Targets as for ``mdlm_owt_small``: one host of 8 x H200 (H100s: ``:tpu``), or a v5p-16
slice (topology v5p:2x2x2) with ``:tpu``; check with ``python -m mdlm_jax.main compile``.
Args as for ``mdlm_owt_small`` (``tpu``, ``cpu``, ``smoke``).
"""


from mdlm_jax.config_base import lock, sibling_config


def get_config(arg=None):
    c = sibling_config(__file__, "mdlm_owt_small.py", arg)
    c.unlock()
    c.model.causal = True
    c.model.time_conditioning = False
    c.loss.terms = {"ar_nll": 1.0}
    c.train.sample_at_end = False
    return lock(c)
