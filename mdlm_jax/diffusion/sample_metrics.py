"""Generative quality of samples: unigram entropy and perplexity under an AR model.

The metric maths are pure functions of token ids (and of an ``apply``/params pair for
the perplexity); they never read checkpoints: ``model_loading.load_ar_scorer`` loads the
causal scorer named by ``sampler.eval_model_workdir`` (a run trained with ``ar_nll``).
"""

from __future__ import annotations

import math
from collections import Counter

import jax.numpy as jnp
import numpy as np

from mdlm_jax.diffusion.losses import ar_nll_per_token, next_token_sums
from mdlm_jax.monitoring import require_finite


def unigram_entropy(ids) -> float:
    """Entropy (nats) of the empirical unigram distribution of one token sequence.

    MDLM reports it per sample: low values flag degenerate, repetitive samples.
    """
    counts = np.asarray(list(Counter(int(i) for i in ids).values()), np.float64)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mean_unigram_entropy(samples) -> float:
    """Mean over samples of :func:`unigram_entropy`."""
    samples = list(samples)
    return float(np.mean([unigram_entropy(s) for s in samples])) if samples else 0.0


def ar_nll_sums(apply, params, tokens_BxL, valid_BxL=None):
    """``(nll_sum_B, count_B)``: next-token NLL of a causal model over valid pairs."""
    tokens_BxL = jnp.asarray(tokens_BxL, jnp.int32)
    nll = ar_nll_per_token(apply(params, tokens_BxL, None), tokens_BxL)
    valid = jnp.ones(tokens_BxL.shape, jnp.bool_) if valid_BxL is None else valid_BxL
    return next_token_sums(nll, valid)


def ar_perplexity(apply, params, tokens_BxL, valid_BxL=None) -> float:
    """Generative perplexity: exp(total NLL / scored tokens) under the AR model."""
    nll, count = ar_nll_sums(apply, params, tokens_BxL, valid_BxL)
    total = float(jnp.sum(count))
    if total == 0:
        raise ValueError("no token pair to score: samples need at least two tokens")
    return float(math.exp(float(jnp.sum(nll)) / total))


def quality_metrics(samples, *, eval_model=None, batch_size: int = 8) -> dict:
    """Mean unigram entropy, plus AR perplexity when ``eval_model=(apply, params)``."""
    samples = [list(map(int, s)) for s in samples]
    out = {"unigram_entropy": mean_unigram_entropy(samples)}
    if eval_model is not None and samples:
        apply, params = eval_model
        width = max(len(s) for s in samples)
        nll, count = 0.0, 0
        for i in range(0, len(samples), batch_size):
            chunk = samples[i:i + batch_size]
            toks = np.zeros((len(chunk), width), np.int32)
            valid = np.zeros((len(chunk), width), bool)
            for r, s in enumerate(chunk):
                toks[r, :len(s)], valid[r, :len(s)] = s, True
            n, c = ar_nll_sums(apply, params, toks, valid)
            nll, count = nll + float(jnp.sum(n)), count + int(jnp.sum(c))
        out["ar_perplexity"] = float(math.exp(nll / max(count, 1)))
    return require_finite(out, "the sample metrics", "The scoring model (sampler."
                          "eval_model_workdir) gives non-finite scores: check its training "
                          "and that it shares the samples' tokenizer")


__all__ = ["ar_nll_sums", "ar_perplexity", "mean_unigram_entropy",
           "quality_metrics", "unigram_entropy"]

