"""Every configs/context file loads, declares only base keys and names a known experiment."""

import pathlib
import runpy

import pytest
from conftest import flat_config_keys

from mdlm_jax.config_base import base_config
from mdlm_jax.context import experiments

FOLDER = pathlib.Path(__file__).resolve().parents[2] / "configs" / "context"
FILES = sorted(p for p in FOLDER.glob("*.py") if p.stem != "suite")


def test_one_config_per_experiment():
    assert {p.stem for p in FILES} == set(experiments.EXPERIMENTS)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
@pytest.mark.parametrize("arg", [None, "model=llada_base,path=/models/x,points=3"])
def test_config_loads(path, arg):
    c = runpy.run_path(str(path))["get_config"](arg)
    assert set(flat_config_keys(c)) == set(flat_config_keys(base_config()))
    assert c.context.experiment == path.stem
    assert experiments.get(c.context.experiment).points(c.context)
    with pytest.raises(ValueError, match="unknown model='gpt9'; valid: quickstart"):
        runpy.run_path(str(path))["get_config"]("model=gpt9")


REPRO_FOLDER = FOLDER.parent / "repro"


@pytest.mark.parametrize("size", ["cpu", "gpu", "smoke"])
def test_repro_presets_fit_their_arms_and_hold_out_the_training_words(size):
    """Every point of every experiment fits the context of the repro arm it evaluates,
    and its prompts use only the evaluation words."""
    from mdlm_jax.context import harness, tasks
    from mdlm_jax.context.loading import Model
    from mdlm_jax.data.tokenizers import CharTokenizer

    arm = runpy.run_path(str(REPRO_FOLDER / "mdlm.py"))["get_config"](size)
    heldout = {w for ws in tasks.word_lists("heldout").values() for w in ws}
    for path in FILES:
        c = runpy.run_path(str(path))["get_config"](f"model=repro_{size}")
        cx = c.context
        assert cx.words == "heldout" and cx.model_path == f"runs/repro_{size}/mdlm"
        model = Model(None, None, arm.model, CharTokenizer(), arm.diffusion.mask_id, "m",
                      False)
        points = experiments.get(cx.experiment).points(cx)
        for p in points[:: max(1, len(points) // 400)]:
            prompt, enc, _ = harness.encode_point(p, model, cx)
            harness.check_fits(p, enc, arm.model.max_length, enc.filler[1] - enc.filler[0])
            words = [o for piece, kind in zip(prompt.pieces, prompt.kinds)
                     if kind != "distractor" for o in _options(piece)]
            assert set(words) <= heldout


def _options(piece):
    body = piece.split("Options: ", 1)[1].split("\n")[0]
    return [o.split(") ", 1)[1] for o in body.split(", ")]
