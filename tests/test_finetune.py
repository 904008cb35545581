"""Mask-agnostic LoRA fine-tuning through the train loop: exact resume, frozen base."""


import jax
import numpy as np
import pytest

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import model_loading, monitoring

N = 3  # fine-tune steps before the interruption; the uninterrupted run does 2N


def finetune_config(base_workdir, num_steps, *, context_eval=False):
    from conftest import make_tiny_config

    c = make_tiny_config(train__num_steps=num_steps, checkpoint__every_steps=N,
                         optimizer__decay="constant", optimizer__warmup_steps=1,
                         optimizer__ema_decay=0.5)
    c.checkpoint.restore_from = str(base_workdir)
    c.data.name = "prompt_answer"
    c.data.files = "embedded"
    c.data.seq_len = 256
    c.model.max_length = 256
    c.loss.terms = {"mask_agnostic": 1.0}
    ma = c.loss.mask_agnostic
    ma.max_masks, ma.curriculum_start, ma.curriculum_steps = 16, 2, 4
    ma.probe_mask_counts = (0, 4)
    c.lora.rank, c.lora.alpha = 2, 4.0
    c.lora.targets = ("q", "v", "fc_in")
    if context_eval:  # PAPER.md experiment 10 at the end of the fine-tune, sized for 256
        cx = c.context
        cx.eval_at_end, cx.relevant_tasks, cx.n_relevant, cx.n_distractors = (
            True, ("animal",), 1, 2)
        cx.sensitivity_counts, cx.sensitivity_points = (0, 4), 2
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import make_tiny_config, run_captured

    root = tmp_path_factory.mktemp("finetune")
    run_captured(make_tiny_config(train__num_steps=4), root / "base")
    full = run_captured(finetune_config(root / "base", 2 * N, context_eval=True),
                        root / "full")
    run_captured(finetune_config(root / "base", N), root / "resumed")
    second = run_captured(finetune_config(root / "base", 2 * N), root / "resumed")
    return {"root": root, "full": full, "second": second}


def test_finetune_ends_with_the_mask_sensitivity_evaluation(runs):
    summary, console = runs["full"]
    ctx = summary["context"]
    assert [c["masks"] for c in ctx["conditions"]] == [1.0, 5.0] and ctx["points"] == 8
    assert (runs["root"] / "full" / "context" / f"mask_sensitivity_step{2 * N}" /
            "summary.json").exists()
    assert "context mask_sensitivity" in console


def losses(workdir):
    return {r["step"]: r["loss"] for r in monitoring.read_metrics(str(workdir), "train")}


def test_finetune_resumes_exactly(runs):
    root = runs["root"]
    _, console = runs["second"]
    assert f"Resumed from step {N}" in console
    full, resumed = losses(root / "full"), losses(root / "resumed")
    assert sorted(full) == sorted(resumed) == list(range(1, 2 * N + 1))
    for step in full:
        assert resumed[step] == pytest.approx(full[step], rel=1e-6, abs=1e-6), step


def test_finetune_checkpoints_hold_only_adapters_and_base_is_unchanged(runs):
    root = runs["root"]
    stored = ckpt.stored_shapes(str(root / "full"), 2 * N, "state")
    leaves = jax.tree_util.tree_flatten_with_path(
        stored["params"], is_leaf=lambda x: isinstance(x, tuple))[0]
    names = {jax.tree_util.keystr(path) for path, _ in leaves}
    assert names and all("lora_" in n for n in names), sorted(names)[:5]
    cfg = finetune_config(root / "base", 2 * N)
    _, merged, _ = model_loading.load_model(str(root / "full"), cfg, use_ema=False)
    _, base, _ = model_loading.load_model(str(root / "base"), None, use_ema=True)
    # untouched projections (not LoRA targets) are bit-identical to the base model
    np.testing.assert_array_equal(np.asarray(merged["blocks"]["attn"]["k"]["kernel"]),
                                  np.asarray(base["blocks"]["attn"]["k"]["kernel"]))
    # targeted ones moved by the merged adapter (B is zero at the start, so a trained
    # adapter must have changed them)
    assert not np.array_equal(np.asarray(merged["blocks"]["attn"]["q"]["kernel"]),
                              np.asarray(base["blocks"]["attn"]["q"]["kernel"]))


def test_finetune_reports_invariance_before_and_after(runs):
    summary, _ = runs["full"]
    report = summary["invariance"]
    assert {"tv@4", "ce@0", "ce@4", "tv_mean"} <= set(report)
    assert (runs["root"] / "full" / "invariance_before.json").exists()
    kinds = {r["kind"] for r in monitoring.read_metrics(str(runs["root"] / "full"))}
    assert {"invariance_before", "invariance_after", "eval"} <= kinds
