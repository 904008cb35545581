"""The context command: every experiment end to end, resumption, bad input."""

import json
import os
import subprocess
import sys

import context_support
import jax
import pytest
from context_support import suite_config, tiny_model_config

from mdlm_jax import model as model_lib
from mdlm_jax.context import experiments, harness
from mdlm_jax.data.tokenizers import CharTokenizer

SMALL = {"unmasking": dict(mask_counts=(2,)), "dot_filler": dict(mask_counts=(3,))}

# the shared fixtures (see context_support)
ar_workdir = context_support.ar_workdir
mdlm_workdir = context_support.mdlm_workdir
one_device_mesh = context_support.one_device_mesh


def _rows(folder):
    with open(os.path.join(folder, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("name", list(experiments.EXPERIMENTS))
def test_every_experiment_writes_results_summary_table_and_plot(name, mdlm_workdir,
                                                                one_device_mesh, tmp_path):
    cfg = suite_config(mdlm_workdir, name, **SMALL.get(name, {}))
    summary = harness.run(cfg, str(tmp_path), mesh=one_device_mesh)
    folder = tmp_path / "context" / name
    rows = _rows(folder)
    points = experiments.get(name).points(cfg.context)
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in points)
    for r in rows:
        assert {"model", "tokenizer", "seed", "pair", "position", "masks", "correct",
                "prompt_tokens"} <= set(r)
        assert r["masks"] >= 1 and r["model"] == "model" and r["tokenizer"] == "char"
    stored = json.loads((folder / "summary.json").read_text())
    assert stored["conditions"] == json.loads(json.dumps(summary["conditions"]))
    for c in stored["conditions"]:
        assert 0.0 <= c["accuracy"] <= 1.0 and c["pairs"] == 2 and c["ci95"] is not None
    assert (folder / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| series |" in (folder / "table.md").read_text()
    if name in ("attribution", "attribution_split"):
        assert all(abs(sum(r["attr_pieces"]) - 1) < 1e-3 for r in rows)
    if name == "attribution_split":
        assert all(r["masks"] == 5 and r["attr_mask"] is not None for r in rows)


def test_ar_model_runs_locality_and_refuses_masks(ar_workdir, one_device_mesh, tmp_path):
    summary = harness.run(suite_config(ar_workdir, "locality"), str(tmp_path),
                          mesh=one_device_mesh)
    assert all(c["masks"] == 0 for c in summary["conditions"])
    with pytest.raises(ValueError, match="causal \\(AR\\) model"):
        harness.run(suite_config(ar_workdir, "extra_masks"), str(tmp_path / "b"),
                    mesh=one_device_mesh)
    dots = harness.run(suite_config(ar_workdir, "dot_filler"), str(tmp_path / "c"),
                       mesh=one_device_mesh)  # the ' .' series only: no mask to place
    assert {c["series"] for c in dots["conditions"]} == {"masks", "' .' repeated"}
    assert {c["x"] for c in dots["conditions"] if c["series"] == "masks"} == {0}
    assert all(c["masks"] == 0 for c in dots["conditions"])


def test_killed_sweep_resumes_without_recomputing(mdlm_workdir, one_device_mesh, tmp_path,
                                                  monkeypatch):
    cfg = suite_config(mdlm_workdir, "extra_masks", points=4)  # 16 points: 2 batches of 8
    real = harness.Runner.run
    computed = []

    def dying(self, method, items):
        if computed:
            raise KeyboardInterrupt  # killed during the second batch
        computed.extend(it[0].key for it in items)
        return real(self, method, items)

    monkeypatch.setattr(harness.Runner, "run", dying)
    with pytest.raises(KeyboardInterrupt):
        harness.run(cfg, str(tmp_path), mesh=one_device_mesh)
    path = tmp_path / "context" / "extra_masks" / "results.jsonl"
    first = path.read_text()
    assert len(first.splitlines()) == 8
    with open(path, "a") as f:
        f.write('{"key": "cut by the ki')  # a line cut by the kill
    redone = []

    def counting(self, method, items):
        redone.extend(it[0].key for it in items)
        return real(self, method, items)

    monkeypatch.setattr(harness.Runner, "run", counting)
    harness.run(cfg, str(tmp_path), mesh=one_device_mesh)
    assert path.read_text().startswith(first)
    rows = harness._read_rows(str(path))
    assert len(rows) == 16 and len({r["key"] for r in rows}) == 16
    assert not set(redone) & set(computed[:8])
    redone.clear()
    harness.run(cfg, str(tmp_path), mesh=one_device_mesh)  # all done: nothing computed
    assert redone == []


@pytest.mark.parametrize("overrides,match", [
    (dict(mask_counts=(400,)), "400 extra tokens after the answer slot.*at most \\d+ fit"),
    (dict(n_distractors=20, mask_counts=(0,)),
     "21 in-context examples make a \\d+-token prompt.*about \\d+ examples"),
    (dict(experiment="locality_bias"), "unknown; valid: locality, mask_location"),
    (dict(relevant_tasks=("planet",)), "unknown task.*valid: adjective"),
])
def test_bad_input_is_one_clear_line_and_keeps_results(overrides, match, mdlm_workdir,
                                                       one_device_mesh, tmp_path):
    harness.run(suite_config(mdlm_workdir, "extra_masks", mask_counts=(0,)), str(tmp_path),
                mesh=one_device_mesh)
    path = tmp_path / "context" / "extra_masks" / "results.jsonl"
    before = path.read_text()
    with pytest.raises(ValueError, match=match) as e:
        harness.run(suite_config(mdlm_workdir, **{"experiment": "extra_masks", **overrides}),
                    str(tmp_path), mesh=one_device_mesh)
    assert "\n" not in str(e.value)
    assert path.read_text() == before


def test_other_run_in_the_same_folder_and_multi_token_letters_are_refused(
        mdlm_workdir, one_device_mesh, tmp_path):
    harness.run(suite_config(mdlm_workdir, "extra_masks", mask_counts=(0,)), str(tmp_path),
                mesh=one_device_mesh)
    with pytest.raises(ValueError, match="another run \\(seed: 0, now 1\\).*another --workdir"):
        harness.run(suite_config(mdlm_workdir, "extra_masks", mask_counts=(0,), seed=1),
                    str(tmp_path), mesh=one_device_mesh)
    # the results belong to the checkpoint step they scored; a later step is refused
    run_json = tmp_path / "context" / "extra_masks" / "run.json"
    header = json.loads(run_json.read_text())
    steps = [int(d) for d in os.listdir(os.path.join(mdlm_workdir, "checkpoints")) if d.isdigit()]
    assert header["step"] == max(steps)
    run_json.write_text(json.dumps({**header, "step": header["step"] - 1}))
    with pytest.raises(ValueError, match=f"\\(step: {header['step'] - 1}, now {header['step']}"
                                         "\\).*mv .*extra_masks"):
        harness.run(suite_config(mdlm_workdir, "extra_masks", mask_counts=(0,)), str(tmp_path),
                    mesh=one_device_mesh)

    class Merging(CharTokenizer):
        name = "merging"

        def encode(self, text):
            return super().encode(text.replace("[B", "\x01"))

    cfg = tiny_model_config()
    apply, params = model_lib.create(cfg.model, jax.random.key(0))
    model = harness.Model(apply, params, cfg.model, Merging(), 257, "m", False)
    with pytest.raises(ValueError, match="'B' after 'Answer:\\[' is not a single token"):
        harness.run(suite_config("", "extra_masks"), str(tmp_path / "m"), model=model,
                    mesh=one_device_mesh)


def test_mask_sensitivity_at_the_end_of_training(one_device_mesh, tmp_path):
    cfg = tiny_model_config()
    with cfg.unlocked():
        cfg.context.update(suite_config("").context)
    apply, params = model_lib.create(cfg.model, jax.random.key(0))
    summary = harness.evaluate_in_training(cfg, str(tmp_path), apply, params, 7,
                                           mesh=one_device_mesh)
    assert [c["masks"] for c in summary["conditions"]] == [1.0, 5.0]
    assert (tmp_path / "context" / "mask_sensitivity_step7" / "plot.png").exists()


def test_cli_model_path_neither_workdir_nor_hf_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-m", "mdlm_jax.main", "context", "--config",
         os.path.join(repo, "configs/context/extra_masks.py"), "--workdir", str(tmp_path / "w"),
         f"--config.context.model_path={tmp_path / 'empty'}"],
        capture_output=True, text=True, cwd=repo, timeout=300,
        env={**os.environ, "PYTHONPATH": repo})
    assert out.returncode != 0
    err = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "neither a workdir of this project" in err[0], out.stderr
    assert not (tmp_path / "w").exists()


def test_eval_at_end_that_cannot_fit_is_refused_before_training(tmp_path):
    from conftest import make_tiny_config, run_captured

    too_small = make_tiny_config(context__eval_at_end=True)  # model.max_length=64
    with pytest.raises(ValueError, match="make a \\d+-token prompt, over model.max_length=64"):
        run_captured(too_small, tmp_path / "small")
    assert not (tmp_path / "small" / "checkpoints").exists()


def test_huggingface_directory_is_imported(one_device_mesh, tmp_path):
    from context_support import write_hf_llada

    hf_dir = write_hf_llada(str(tmp_path / "llada"))
    assert harness.is_hf_dir(hf_dir) and not harness.is_workdir(hf_dir)
    cfg = suite_config(hf_dir, "extra_masks", mask_counts=(0, 2))
    summary = harness.run(cfg, str(tmp_path / "out"), mesh=one_device_mesh)
    rows = _rows(tmp_path / "out" / "context" / "extra_masks")
    assert {r["masks"] for r in rows} == {1, 3} and len(rows) == 8
    assert all(r["tokenizer"].startswith("hf") and r["model"] == "llada" for r in rows)
    assert summary["mask_in_softmax"] == "keep"  # auto: LLaDA weights score as LLaDA does
