"""How much appended masks move the model's answer: the mask-invariance report.

For prompt/answer batches (layout in ``diffusion.mask_agnostic``) the answer is noised once per
example with the fixed probability p = (p_low + p_high) / 2 (at least one masked token;
time-conditioned models are told the schedule's time for the realised mask rate) and
fixed RNG, then fed as ``prompt + noised answer + [MASK] * k + EOS`` for each probe
count k. Over the masked answer positions it reports, per k:

    ce@k   mean -log p(a_j | x_k) per masked answer token (nats, SUBS)
    acc@k  share of masked answer tokens whose argmax is right
    tv@k   mean L1 distance between the softmax at k and at 0 extra masks (0 when k = 0)

over the same examples for every k: those with room (seq_len - prompt - answer) for the
largest probe count (``examples`` counts them; none is an error),

plus ``tv_mean`` (mean tv@k over k > 0) and ``ce_spread`` (max - min of ce@k). The train
loop calls :func:`invariance_report` before and after a mask-agnostic run and prints
:func:`format_comparison`, so one sees whether invariance improved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mdlm_jax.data.tokenizers import eos_id
from mdlm_jax.diffusion import mask_agnostic, schedules
from mdlm_jax.diffusion.parameterization import clean_log_probs
from mdlm_jax.monitoring import require_finite


def _probe_fn(apply, counts, mcfg, mask_id: int, eos_id: int, schedule):

    def probe(params, batch, rng, p):
        x0 = batch["tokens"]
        b, length = x0.shape
        k_cut, k_m = jax.random.split(rng)
        q, a = mask_agnostic.prompt_answer_lengths(batch, k_cut, mcfg)
        p_b = jnp.full((b,), p, jnp.float32)
        masked = mask_agnostic.noise_answer(k_m, q, a, p_b, length)
        t_b = schedule.time_at(mask_agnostic.realised_rate(masked, a, p_b))
        room = length - q - a

        def log_probs(k):
            n_masks = jnp.full((b,), k, jnp.int32)
            x = mask_agnostic.with_extra_masks(x0, q, a, masked, n_masks, mask_id, eos_id)
            return clean_log_probs(apply(params, x, t_b), mask_id)

        logp_ref = log_probs(0)
        ref = jnp.exp(logp_ref)
        rows = (room >= max(counts)) & (a > 0)
        use = masked & rows[:, None]
        out = {"examples": jnp.sum(rows)}
        for k in counts:
            logp = logp_ref if k == 0 else log_probs(k)
            nll = -jnp.take_along_axis(logp, x0[..., None], axis=-1)[..., 0]
            right = jnp.argmax(logp, axis=-1) == x0
            dist = jnp.sum(jnp.abs(jnp.exp(logp) - ref), axis=-1)
            out[f"k{k}"] = {
                "ce": jnp.sum(jnp.where(use, nll, 0.0)),
                "acc": jnp.sum(jnp.where(use, right, False)),
                "tv": jnp.sum(jnp.where(use, dist, 0.0)),
                "tokens": jnp.sum(use),
            }
        return out

    return jax.jit(probe)


def invariance_report(apply, params, batches, config, probe_mask_counts=(0, 8, 32, 128), *,
                      seed: int = 0) -> dict:
    """The report of the module docstring, a flat dict of floats."""
    counts = tuple(sorted({int(k) for k in probe_mask_counts}))
    if not counts or counts[0] < 0:
        raise ValueError(f"probe_mask_counts={probe_mask_counts} must be counts >= 0")
    mcfg = config.loss.mask_agnostic
    mask_agnostic.check_mask_agnostic_config(mcfg)
    p = 0.5 * (mcfg.p_low + mcfg.p_high)
    probe = _probe_fn(apply, counts, mcfg, config.diffusion.mask_id, eos_id(config.data),
                      schedules.from_config(config.diffusion))
    sums = {k: {"ce": 0.0, "acc": 0.0, "tv": 0.0, "tokens": 0.0} for k in counts}
    n_batches, examples = 0, 0
    for i, batch in enumerate(batches):
        batch = {k: jnp.asarray(v) for k, v in batch.items() if k != "step"}
        out = jax.device_get(probe(params, batch, jax.random.fold_in(jax.random.key(seed), i),
                                   p))
        for k in counts:
            for name, v in out[f"k{k}"].items():
                sums[k][name] += float(v)
        n_batches, examples = n_batches + 1, examples + int(out["examples"])
    if n_batches == 0:
        raise ValueError("invariance_report got no batches")
    if examples == 0:
        raise ValueError(f"no example has room for {max(counts)} extra masks after its prompt "
                         "and answer: lower probe_mask_counts or raise data.seq_len")
    report: dict = {"p": p, "examples": float(examples)}
    for k in counts:
        tok = max(sums[k]["tokens"], 1.0)
        report[f"ce@{k}"] = sums[k]["ce"] / tok
        report[f"acc@{k}"] = sums[k]["acc"] / tok
        report[f"tv@{k}"] = sums[k]["tv"] / tok
    extra = [report[f"tv@{k}"] for k in counts if k > 0]
    report["tv_mean"] = float(np.mean(extra)) if extra else 0.0
    ces = [report[f"ce@{k}"] for k in counts]
    report["ce_spread"] = float(max(ces) - min(ces))
    return require_finite(report, "the invariance report", "The model's outputs are not "
                          "finite: check its training (its loss) before probing it")


def format_comparison(before: dict, after: dict) -> str:
    """A small table: each metric before and after, one row per probe count."""
    counts = sorted(int(k.split("@")[1]) for k in before if k.startswith("ce@"))
    lines = [f"{'masks':>6} {'ce before':>10} {'ce after':>10} {'acc before':>10} "
             f"{'acc after':>10} {'tv before':>10} {'tv after':>10}"]
    for k in counts:
        lines.append(
            f"{k:>6} {before[f'ce@{k}']:>10.4f} {after[f'ce@{k}']:>10.4f} "
            f"{before[f'acc@{k}']:>10.4f} {after[f'acc@{k}']:>10.4f} "
            f"{before[f'tv@{k}']:>10.4f} {after[f'tv@{k}']:>10.4f}")
    lines.append(f"examples {int(before['examples'])} / {int(after['examples'])}; "
                 f"tv_mean {before['tv_mean']:.4f} -> {after['tv_mean']:.4f}; "
                 f"ce_spread {before['ce_spread']:.4f} -> {after['ce_spread']:.4f}")
    return "\n".join(lines)


__all__ = ["format_comparison", "invariance_report"]
