"""lm-eval end to end on tiny models: custom tasks with local data files (multiple choice,
generation, rolling perplexity), for an MDLM and an AR workdir; stop sequences."""

from __future__ import annotations

import json
import os
import sys

import jax
import pytest

pytest.importorskip("lm_eval", reason="lm-eval is part of the test extra: pip install -e .[test]")

from mdlm_jax import checkpoint as ckpt  # noqa: E402
from mdlm_jax import model as model_lib  # noqa: E402
from mdlm_jax.benchmark import generation, loading, run  # noqa: E402
from mdlm_jax.benchmark.harness import MDLMJax, settings_config  # noqa: E402

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DOCS = [
    {"q": "2+2", "choices": ["4", "5", "22"], "label": 0, "answer": "4",
     "text": "In the beginning was the word."},
    {"q": "1+2", "choices": ["3", "12"], "label": 0, "answer": "3",
     "text": "And the earth was without form, and void; and darkness was upon the deep."},
    {"q": "3+3", "choices": ["33", "6"], "label": 1, "answer": "6",
     "text": "Let there be light."},
]
TASKS = {
    "tiny_mc": """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files: {test: DATA}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{q}}\\nA:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
""",
    "tiny_gen": """task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files: {test: DATA}
test_split: test
output_type: generate_until
doc_to_text: "Q: {{q}}\\nA:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n", "Q:"]
  do_sample: false
metric_list:
  - metric: exact_match
""",
    "tiny_ppl": """task: tiny_ppl
dataset_path: json
dataset_kwargs:
  data_files: {test: DATA}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list:
  - metric: word_perplexity
  - metric: bits_per_byte
""",
}


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    for name, text in TASKS.items():
        (folder / f"{name}.yaml").write_text(text.replace("DATA", str(data)))
    return str(folder)


def _random(model_cfg):
    """Random weights (init zeroes the DiT head, which would make every answer equal)."""
    from conftest import _random_params, _Structure

    _, shapes, _ = model_lib.abstract(model_cfg)
    return _random_params(_Structure(shapes))


def _workdir(root, tiny_config, causal: bool):
    cfg = tiny_config()
    with cfg.unlocked():
        if causal:
            cfg.model.family, cfg.model.causal = "llama", True
            cfg.loss.terms = {"ar_nll": 1.0}
    params = _random(cfg.model)
    path = os.path.join(root, "ar" if causal else "mdlm")
    ckpt.save_params(path, params, cfg, step=0)
    return path


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    from conftest import make_tiny_config

    root = str(tmp_path_factory.mktemp("models"))
    return {k: _workdir(root, make_tiny_config, k == "ar") for k in ("mdlm", "ar")}


def _recipe(path, task_dir, out, **sampler):
    cfg = settings_config(path=path, tasks="tiny_mc,tiny_gen,tiny_ppl", include_path=task_dir,
                          mc_samples=8, mc_batch_size=8, batch_size=8, num_fewshot=0,
                          output_dir=out, rolling_batch_size=2, strategy="confidence",
                          steps=8, gen_length=8, block_length=4, temperature=0.0,
                          source="test", published="none", builtin_tasks=False)
    with cfg.unlocked():
        for k, v in sampler.items():
            cfg.sampler[k] = v
    return cfg


def test_three_task_kinds_end_to_end(workdirs, task_dir, tmp_path):
    kind = "mdlm"
    out = str(tmp_path / "results")
    result = run.run(_recipe(workdirs[kind], task_dir, out, extra_masks=3))
    files = os.listdir(out)
    assert files == ["tiny_mc+tiny_gen+tiny_ppl.json"]
    with open(os.path.join(out, files[0])) as f:
        written = json.load(f)
    assert set(written["results"]) == {"tiny_mc", "tiny_gen", "tiny_ppl"}
    assert 0.0 <= written["results"]["tiny_mc"]["acc,none"] <= 1.0
    assert written["results"]["tiny_ppl"]["word_perplexity,none"] > 1.0
    gen_docs = written["samples"]["tiny_gen"]  # lm-eval's per-document record
    assert len(gen_docs) == len(DOCS) and all("filtered_resps" in d for d in gen_docs)
    reqs = written["requests"]
    kinds = [r["request_type"] for r in reqs]
    n_choices = sum(len(d["choices"]) for d in DOCS)
    assert kinds.count("loglikelihood") == n_choices
    assert kinds.count("generate_until") == kinds.count("loglikelihood_rolling") == len(DOCS)
    gen = [r for r in reqs if r["request_type"] == "generate_until"]
    assert all(r["extra_masks"] == 3 and r["settings"]["gen_length"] == 8 for r in gen)
    assert all(r["until"] == ["\n", "Q:"] and "\n" not in r["text"] for r in gen)
    ll = [r for r in reqs if r["request_type"] == "loglikelihood"]
    assert all(r["estimator"] == "llada_mc" and r["mc_samples"] == 8 for r in ll)
    assert written["recipe"]["sampler"]["extra_masks"] == 3
    assert all(r["loglikelihood"] < 0 and r["mc_standard_error"] > 0 for r in ll)
    assert not result["model"]["causal"]
    cfg = _recipe(workdirs[kind], task_dir, out)
    run.write(result, cfg)  # a second result never overwrites the first
    assert sorted(os.listdir(out)) == [files[0], "tiny_mc+tiny_gen+tiny_ppl_1.json"]


class _Req:
    def __init__(self, args):
        self.args, self.task_name, self.doc_id = args, "t", 0


def test_ar_requests_are_exact(workdirs):
    import numpy as np

    lm = MDLMJax(path=workdirs["ar"], batch_size=8)
    (ll, greedy), (other, _) = lm.loglikelihood(  # one batch, rows of different lengths
        [_Req(("Q: 2+2\nA: ", "4 ok")), _Req(("A much longer context here:", " yes"))])
    assert other < 0
    ctx, cont = lm.encode_pair("Q: 2+2\nA: ", "4 ok")
    assert lm.tok.decode(cont) == " 4 ok"  # the trailing space moved to the continuation
    rows = np.zeros((len(cont), 64), np.int32)  # one row per prefix (right padding is
    for j in range(len(cont)):  # invisible to a causal model): read its last position
        rows[j, :len(ctx) + j] = ctx + cont[:j]
    logp = jax.nn.log_softmax(lm.loaded.apply(lm.loaded.params, rows), axis=-1)
    want = sum(float(logp[j, len(ctx) + j - 1, t]) for j, t in enumerate(cont))
    np.testing.assert_allclose(ll, want, rtol=1e-4)
    text = "In the beginning was the word, and the word was with God."  # > one window
    (rolled,) = lm.loglikelihood_rolling([_Req((text,))])
    rec = lm.records[-1]
    assert rec["tokens"] == len(lm.tok.encode(text)) and rec["estimator"] == "exact"
    assert rolled < 0


@pytest.mark.parametrize("kind,kv_cache", [("mdlm", "none"), ("ar", "none"),
                                           ("llama_mdlm", "dual")])
def test_generate_until_respects_stop_sequences(kind, kv_cache, workdirs, tiny_config):
    if kind == "llama_mdlm":  # the KV caches need the llama family: an MDLM llama workdir
        cfg = tiny_config()
        with cfg.unlocked():
            cfg.model.family = "llama"
        params = _random(cfg.model)
        path = os.path.join(os.path.dirname(workdirs["ar"]), "llama_mdlm")
        if not os.path.exists(path):
            ckpt.save_params(path, params, cfg, step=0)
    else:
        path = workdirs[kind]
    lm = MDLMJax(path=path, strategy="confidence", steps=16, gen_length=16, block_length=8,
                 temperature=0.0, batch_size=8, kv_cache=kv_cache, stop_at_eos=False)
    prompts = ["Q: 2+2\nA:", "Q: a much longer prompt\nA:"]
    free = lm.generate_until([_Req((p, {"until": []})) for p in prompts])
    assert all(len(t) > 0 for t in free)
    stops = [t[len(t) // 2] for t in free]  # a character from the middle of each text
    cut = lm.generate_until([_Req((p, {"until": [s]})) for p, s in zip(prompts, stops)])
    for full, s, got in zip(free, stops, cut):
        assert got == full[:full.index(s)], (full, s, got)
        assert s not in got


def test_cut_at_eos_then_earliest_stop_sequence():
    from mdlm_jax.data.tokenizers import CharTokenizer

    tok = CharTokenizer()
    ids = list(b"abc;def.ghi") + [tok.eos_id] + list(b"xyz")
    text, kept, why = generation.cut(ids, tok, [".", ";"], end_ids=[tok.eos_id],
                                     stop_at_eos=True)
    assert (text, why) == ("abc", "stop:;")
    text, kept, why = generation.cut(ids, tok, ["q"], end_ids=[tok.eos_id], stop_at_eos=True)
    assert (text, why, len(kept)) == ("abc;def.ghi", "eos", 11)
    text, _, why = generation.cut(ids, tok, [], end_ids=[tok.eos_id], stop_at_eos=False)
    assert why == "length" and text.endswith("xyz")


def test_bad_settings_and_missing_lm_eval_are_one_line_errors(monkeypatch, workdirs):
    with pytest.raises(ValueError, match="not a benchmark or sampler setting; did you mean"):
        settings_config(mc_sample=4)
    with pytest.raises(FileNotFoundError, match="neither checkpoints"):
        loading.load(os.path.dirname(workdirs["ar"]))
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(ValueError, match=r"pip install -e '\.\[eval\]'"):
        run.require_lm_eval()


def test_greedy_check_matches_one_token_per_step_decoding(workdirs):
    import dataclasses

    lm = MDLMJax(path=workdirs["mdlm"], greedy_check=True, mc_samples=4, mc_batch_size=4,
                 batch_size=8)
    ctx = lm.tok.encode("Q: 2+2\nA:")
    s = dataclasses.replace(lm.sampling, strategy="confidence", steps=3, gen_length=3,
                            block_length=3, temperature=0.0)
    (g,) = generation.generate_until(lm.loaded, [ctx], [[]], s, batch_size=8,
                                     stop_at_eos=False)
    assert lm._greedy(ctx, g.token_ids)
    other = [(g.token_ids[0] + 1) % 256] + g.token_ids[1:]
    assert not lm._greedy(ctx, other)


def test_benchmark_command_without_a_model_is_one_line():
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-m", "mdlm_jax.main", "benchmark", "--config",
                        "configs/benchmarks/llada_8b_base.py:gsm8k"], cwd=repo,
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode != 0
    assert r.stderr.startswith("error: no model path: set benchmark.path"), r.stderr
    assert "Traceback" not in r.stderr
