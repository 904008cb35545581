"""The one loading function on HF directories: an MDLM (LLaDA layout) and an AR model
(Qwen2) answer lm-eval requests; the AR log-likelihood equals transformers' own."""

from __future__ import annotations

import os
import pathlib
import sys

import numpy as np
import pytest

pytest.importorskip("lm_eval", reason="lm-eval is part of the test extra: pip install -e .[test]")
torch = pytest.importorskip("torch", reason="the reference model is built with torch")

from mdlm_jax.benchmark import loading  # noqa: E402
from mdlm_jax.benchmark.harness import MDLMJax  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "checkpoint"))
import test_hf_fixtures as fx  # noqa: E402


class _Req:
    def __init__(self, args):
        self.args, self.task_name, self.doc_id = args, "t", 0


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_bench")
    qwen = fx.torch_model("qwen2", tied=True, seed=1)
    out = {"qwen2": str(root / "qwen2"), "llada": str(root / "llada"), "torch": qwen}
    qwen.save_pretrained(out["qwen2"], safe_serialization=True)
    fx.write_tokenizer(out["qwen2"], 60)
    fx.save_st(out["llada"], fx.llada_names(fx.state_dict_np(fx.torch_model("llama"))))
    fx.write_json(os.path.join(out["llada"], "config.json"), fx.llada_config())
    fx.write_tokenizer(out["llada"], 62)
    return out


def test_hf_causal_model_loglikelihood_equals_transformers(hf_dirs):
    loaded = loading.load(hf_dirs["qwen2"])
    assert loaded.kind == "hf" and not loaded.is_diffusion and loaded.config.model.causal
    lm = MDLMJax(loaded=loaded, batch_size=8)
    (ll, _), = lm.loglikelihood([_Req(("w5 w9 w3", " w7 w2"))])
    ctx, cont = lm.encode_pair("w5 w9 w3", " w7 w2")
    assert len(ctx) == 3 and len(cont) == 2
    with torch.no_grad():
        logits = hf_dirs["torch"](torch.tensor([ctx + cont])).logits[0].double()
    logp = torch.log_softmax(logits, -1).numpy()
    want = sum(logp[len(ctx) + j - 1, t] for j, t in enumerate(cont))
    np.testing.assert_allclose(ll, want, rtol=1e-4)


def test_hf_diffusion_model_answers_every_request_type(hf_dirs):
    loaded = loading.load(hf_dirs["llada"])
    assert loaded.is_diffusion and loaded.config.diffusion.mask_id == 63
    lm = MDLMJax(loaded=loaded, mc_samples=8, mc_batch_size=8, batch_size=8, steps=4,
                 gen_length=4, block_length=4, temperature=0.0, cfg_scale=0.5)
    (ll, _), = lm.loglikelihood([_Req(("w5 w9 w3", " w7 w2"))])
    assert ll < 0 and lm.records[-1]["cfg_scale"] == 0.5
    (rolled,) = lm.loglikelihood_rolling([_Req(("w1 w2 w3 w4 w5",))])
    assert rolled < 0 and lm.records[-1]["tokens"] == 5
    (text,) = lm.generate_until([_Req(("w5 w9", {"until": ["never"]}))])
    assert lm.records[-1]["generated_tokens"] <= 4 and isinstance(text, str)
