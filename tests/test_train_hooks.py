"""Loss terms and evaluations plug into training from outside the library."""

import jax.numpy as jnp
import pytest

from mdlm_jax import monitoring
from mdlm_jax.diffusion import losses
from mdlm_jax.train_hooks import EVALUATIONS, Hook

TOY = "toy_logit_l2"


@pytest.fixture
def toy_term():
    """A regulariser registered here, as a user would: the mean squared logit."""
    calls = {"check": 0, "before": 0, "at_end": 0}

    def check(config, tokenizer):
        calls["check"] += 1
        if config.model.causal:
            raise ValueError(f"{TOY} wants a bidirectional model")

    class ToyProbe(Hook):
        def __init__(self, config):
            self.config = config

        def before_training(self, run):
            calls["before"] += 1

        def at_end(self, run):
            calls["at_end"] += 1
            return {"toy_probe": int(run.state["step"])}

    @losses.register(TOY, check=check, forward_passes=1, evaluations=("toy_probe",))
    def toy(apply, params, batch, rng, cfg):
        del rng, cfg
        logits = apply(params, batch["tokens"], None)
        value = jnp.mean(jnp.square(logits.astype(jnp.float32)))
        return value, {"mean_sq_logit": value}

    EVALUATIONS["toy_probe"] = ToyProbe
    yield calls
    del losses.TERMS[TOY]
    del EVALUATIONS["toy_probe"]


def test_a_term_registered_outside_the_library_trains(toy_term, tiny_config, tmp_path):
    from conftest import run_captured

    config = tiny_config(loss__terms={"nelbo": 1.0, TOY: 0.01}, train__num_steps=3,
                         train__eval_at_end=False)
    assert losses.forward_passes(config) == 2 and losses.is_diffusion(config)
    summary, _ = run_captured(config, tmp_path / "w")
    assert summary["end_step"] == 3 and summary["toy_probe"] == 3
    assert toy_term == {"check": 1, "before": 1, "at_end": 1}
    rows = monitoring.read_metrics(str(tmp_path / "w"), "train")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(f"{TOY}/mean_sq_logit" in r for r in rows)
    assert rows[-1][f"{TOY}/mean_sq_logit"] > 0  # the DiT head starts at zero


def test_a_terms_own_check_refuses_its_settings(toy_term, tiny_config):
    from mdlm_jax.checks import validate_config

    config = tiny_config(loss__terms={TOY: 1.0}, model__causal=True)
    with pytest.raises(ValueError, match=f"{TOY} wants a bidirectional model"):
        validate_config(config)
    assert not losses.is_diffusion(config)  # a causal model is allowed by the checks
