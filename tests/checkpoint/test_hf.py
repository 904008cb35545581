"""Import / export of Hugging Face checkpoints (checkpoint.hf) for the five families."""

import json
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import test_hf_fixtures as fx  # noqa: E402

from mdlm_jax import config_base  # noqa: E402
from mdlm_jax.checkpoint import hf, hf_io  # noqa: E402
from mdlm_jax.diffusion import parameterization  # noqa: E402
from mdlm_jax.param_trees import flatten  # noqa: E402

torch = pytest.importorskip("torch", reason="the HF tests build reference models with torch")
TOKENS = np.random.RandomState(1).randint(0, fx.V - 4, (2, 12))
TOL = 1e-4


_JITTED = {}


def logits(apply, params, tokens=TOKENS, t=None):
    fn = _JITTED.setdefault(id(apply), (apply, jax.jit(apply)))[1]
    t = jnp.zeros((tokens.shape[0],), jnp.float32) if t is None else jnp.asarray(t, jnp.float32)
    with jax.default_matmul_precision("highest"):
        return np.asarray(fn(params, jnp.asarray(tokens), t))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {}
    llama = fx.torch_model("llama")
    out["llama"] = str(root / "llama")
    llama.save_pretrained(out["llama"], safe_serialization=True)
    qwen = fx.torch_model("qwen2", tied=True, seed=1)
    out["qwen2"] = str(root / "qwen2")
    qwen.save_pretrained(out["qwen2"], safe_serialization=True)
    fx.write_tokenizer(out["qwen2"], 60)  # 4 spare embedding rows
    with torch.no_grad():
        tokens = torch.tensor(TOKENS)
        out["llama_hf_logits"] = llama(tokens).logits.numpy()
        out["qwen2_hf_logits"] = qwen(tokens).logits.numpy()
    out["llama_sd"], out["qwen2_sd"] = fx.state_dict_np(llama), fx.state_dict_np(qwen)

    out["llada"] = str(root / "llada")
    fx.save_st(out["llada"], fx.llada_names(out["llama_sd"]))
    fx.write_json(os.path.join(out["llada"], "config.json"), fx.llada_config())
    fx.write_tokenizer(out["llada"], 62)

    out["dream_sd"] = fx.state_dict_np(fx.torch_model("qwen2", tied=False, seed=2))
    out["dream"] = str(root / "dream")
    fx.save_st(out["dream"], out["dream_sd"])
    fx.write_json(os.path.join(out["dream"], "config.json"), fx.dream_config())

    out["mdlm_t"] = fx.mdlm_tensors()
    out["mdlm"] = str(root / "mdlm")
    fx.save_st(out["mdlm"], out["mdlm_t"])
    fx.write_json(os.path.join(out["mdlm"], "config.json"), fx.mdlm_config())
    return out


@pytest.fixture(scope="module")
def loaded(dirs):
    return {fam: hf.load(dirs[fam], return_info=True)
            for fam in ("llama", "qwen2", "llada", "dream", "mdlm")}


# ------------------------------------------------------------- correctness
@pytest.mark.parametrize("fam", ["llama", "qwen2"])
def test_causal_families_match_transformers(dirs, loaded, fam):
    cfg, params, apply, info = loaded[fam]
    assert info.family == fam and cfg.causal and not cfg.logit_shift
    assert cfg.n_kv_heads == fx.KV and cfg.tie_embeddings == (fam == "qwen2")
    assert cfg.qkv_bias == (fam == "qwen2")
    np.testing.assert_allclose(logits(apply, params), dirs[f"{fam}_hf_logits"], atol=TOL)
    # the numpy reference used for LLaDA / Dream agrees with transformers too
    theta = 5e5 if fam == "llama" else 1e6
    ref = fx.ref_llama(dirs[f"{fam}_sd"], TOKENS, theta=theta, causal=True)
    np.testing.assert_allclose(ref, dirs[f"{fam}_hf_logits"], atol=TOL)


def test_llada_matches_reference_and_ids(dirs, loaded):
    cfg, params, apply, info = loaded["llada"]
    assert (cfg.family, cfg.causal, cfg.logit_shift, cfg.rope_theta) == ("llama", False, False,
                                                                         5e5)
    assert (info.mask_id, info.eos_id, info.pad_id) == (63, 1, 1)
    assert info.tokenizer_file.endswith("tokenizer.json") and info.tokenizer_vocab == 62
    ref = fx.ref_llama(dirs["llama_sd"], TOKENS, theta=5e5, causal=False)
    np.testing.assert_allclose(logits(apply, params), ref, atol=TOL)
    from mdlm_jax.checkpoint import hf_tables

    assert hf_tables.special_ids("llada", {})["mask_id"] == 126336  # LLaDA's published id


def test_dream_is_shifted_and_bidirectional(dirs, loaded):
    cfg, params, apply, info = loaded["dream"]
    assert cfg.logit_shift and not cfg.causal and cfg.qkv_bias and info.mask_id == 62
    ref = fx.ref_llama(dirs["dream_sd"], TOKENS, theta=1e6, causal=False, shift=True)
    out = logits(apply, params)
    np.testing.assert_allclose(out, ref, atol=TOL)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])  # first position repeated


def test_mdlm_matches_reference(dirs, loaded):
    cfg, params, apply, info = loaded["mdlm"]
    assert cfg.family == "dit" and cfg.time_conditioning and info.mask_id == fx.V - 1
    sigma = np.array([0.3, 2.0])
    ref = fx.ref_mdlm(dirs["mdlm_t"], TOKENS, sigma)
    np.testing.assert_allclose(logits(apply, params, t=sigma), ref, atol=TOL)


@pytest.mark.parametrize("fam", ["llada", "dream", "mdlm", "llama", "qwen2"])
def test_attention_direction(loaded, fam):
    _, params, apply, _ = loaded[fam]
    changed = TOKENS.copy()
    changed[:, -1] = (changed[:, -1] + 1) % fx.V
    a, b = logits(apply, params), logits(apply, params, changed)
    first = 1 if fam == "dream" else 0  # Dream's position 0 repeats position 1
    if fam in ("llama", "qwen2"):
        np.testing.assert_array_equal(a[:, :-1], b[:, :-1])
        assert np.abs(a[:, -1] - b[:, -1]).max() > 1e-3
    else:
        assert np.abs(a[:, first] - b[:, first]).max() > 1e-4


def test_bf16_checkpoint_loads_as_bf16(dirs, tmp_path):
    from safetensors.torch import save_file

    sd = fx.llada_names(dirs["llama_sd"])
    save_file({k: torch.tensor(v).to(torch.bfloat16) for k, v in sd.items()},
              str(tmp_path / "model.safetensors"))
    fx.write_json(tmp_path / "config.json", {**fx.llada_config(), "torch_dtype": "bfloat16"})
    cfg, params, _ = hf.load(str(tmp_path))
    assert cfg.param_dtype == "bfloat16" and params["embed"].dtype == jnp.bfloat16
    want = torch.tensor(sd["model.transformer.wte.weight"]).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(np.asarray(params["embed"], np.float32), want)
    _, p32, _ = hf.load(str(tmp_path), dtype="float32")
    assert p32["blocks"]["attn"]["q"]["kernel"].dtype == jnp.float32


# ------------------------------------------------------------------- sharding
@pytest.mark.parametrize("fam", ["llada", "dream", "mdlm"])
def test_sharded_load_equals_unsharded(dirs, loaded, fam):
    if jax.device_count() < 8:
        pytest.fail("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from mdlm_jax.parallel.mesh import make_mesh

    mesh_cfg = config_base.base_config().mesh
    mesh_cfg.shape = (2, 2, 2)
    mesh = make_mesh(mesh_cfg)
    _, sharded, _ = hf.load(dirs[fam], mesh=mesh, rules=config_base.DEFAULT_RULES)
    flat_s, flat_u = flatten(sharded), flatten(loaded[fam][1])
    assert flat_s.keys() == flat_u.keys()
    for k in flat_u:
        np.testing.assert_array_equal(np.asarray(flat_s[k]), np.asarray(flat_u[k]), err_msg=k)
    spec = flat_s["embed"].sharding.spec
    assert tuple(spec) == ("tensor", "fsdp"), spec
    q = flat_s["blocks/attn/q/kernel"]
    assert q.addressable_shards[0].data.shape == (fx.NL, fx.D // 2, fx.H // 2, fx.HD)


# ----------------------------------------------------------------- export
def _tensors(folder):
    refs = hf_io.tensor_refs(folder)
    return {k: np.asarray(r.map()) for k, r in refs.items()}


@pytest.mark.parametrize("fam", ["llama", "qwen2", "llada", "dream", "mdlm"])
def test_round_trip_is_bit_exact(dirs, loaded, tmp_path, fam):
    cfg, params, _, info = loaded[fam]
    out = hf.export(params, cfg, tmp_path / "out", family=fam, like=dirs[fam])
    cfg2, params2, _, info2 = hf.load(out, return_info=True)
    for k in hf.ARCH_FIELDS:
        assert cfg2[k] == cfg[k], k
    assert (info2.mask_id, info2.eos_id, info2.family) == (info.mask_id, info.eos_id, fam)
    a, b = flatten(params), flatten(params2)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    src, dst = _tensors(dirs[fam]), _tensors(out)
    src = {k: v for k, v in src.items() if not k.endswith("inv_freq")}
    assert src.keys() == dst.keys()
    for k in src:
        assert src[k].tobytes() == dst[k].tobytes(), k
    if info.tokenizer_file:
        assert os.path.isfile(os.path.join(out, "tokenizer.json"))


def test_export_is_readable_by_transformers_and_sharded(dirs, loaded, tmp_path):
    from transformers import LlamaForCausalLM

    cfg, params, _, _ = loaded["llama"]
    out = hf.export(params, cfg, tmp_path / "sharded", family="llama", like=dirs["llama"],
                    max_shard_bytes=40_000)
    assert os.path.isfile(os.path.join(out, hf_io.INDEX_NAME))
    assert len(hf_io.weight_files(out)) > 1
    model = LlamaForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        got = model(torch.tensor(TOKENS)).logits.numpy()
    np.testing.assert_allclose(got, dirs["llama_hf_logits"], atol=1e-5)
    _, again, _ = hf.load(out)
    np.testing.assert_array_equal(np.asarray(again["embed"]), np.asarray(params["embed"]))


def test_export_merges_lora(loaded, dirs, tmp_path):
    cfg, params, _, _ = loaded["llada"]
    lora = config_base.base_config().lora
    lora.rank, lora.alpha = 2, 4.0
    rng = np.random.RandomState(0)
    q = dict(params["blocks"]["attn"]["q"])
    q["lora_a"] = jnp.asarray(rng.randn(fx.NL, fx.D, 2), jnp.float32)
    q["lora_b"] = jnp.asarray(rng.randn(fx.NL, 2, fx.H, fx.HD), jnp.float32)
    with_lora = {**params, "blocks": {**params["blocks"],
                                      "attn": {**params["blocks"]["attn"], "q": q}}}
    with pytest.raises(ValueError, match="lora=config.lora"):
        hf.export(with_lora, cfg, tmp_path / "no", family="llada", like=dirs["llada"])
    out = hf.export(with_lora, cfg, tmp_path / "merged", family="llada", like=dirs["llada"],
                    lora=lora)
    _, merged, _ = hf.load(out)
    want = np.asarray(q["kernel"]) + 2.0 * np.einsum("ldr,lrhk->ldhk", q["lora_a"],
                                                     q["lora_b"])
    np.testing.assert_allclose(np.asarray(merged["blocks"]["attn"]["q"]["kernel"]), want,
                               rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------- AR -> diffusion
def test_qwen2_as_diffusion_uses_a_spare_row(dirs):
    cfg, params, apply, info = hf.load(dirs["qwen2"], as_diffusion=True, return_info=True)
    assert (cfg.causal, cfg.logit_shift, cfg.vocab_size, info.mask_id) == (False, True, fx.V,
                                                                           60)
    ref = fx.ref_llama(dirs["qwen2_sd"], TOKENS, theta=1e6, causal=False, shift=True)
    np.testing.assert_allclose(logits(apply, params), ref, atol=TOL)


def test_llama_as_diffusion_appends_a_mask_row(dirs, loaded):
    cfg, params, apply, info = hf.load(dirs["llama"], as_diffusion=True, return_info=True)
    assert (cfg.vocab_size, info.mask_id, info.mask_added) == (fx.V + 1, fx.V, True)
    base = loaded["llama"][1]
    np.testing.assert_array_equal(np.asarray(params["embed"][: fx.V]),
                                  np.asarray(base["embed"]))
    np.testing.assert_allclose(np.asarray(params["embed"][fx.V]),
                               np.asarray(base["embed"]).mean(0), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(params["head"]["kernel"][:, fx.V]), 0.0)
    assert logits(apply, params).shape == (2, 12, fx.V + 1)


def test_config_helpers_and_init_params_from(dirs, loaded):
    from mdlm_jax.checkpoint.hf_config import configure_from_directory

    config = config_base.base_config()
    info = configure_from_directory(config, dirs["llada"])
    assert config.diffusion.mask_id == 63 and config.data.tokenizer == "hf"
    assert config.data.tokenizer_path == info.tokenizer_file
    assert config.model.init_from == info.path and config.model.d_model == fx.D
    # published LLaDA weights: 'auto' keeps the mask token in the sampler's softmax
    assert config.model.imported_from == "llada"
    assert parameterization.resolve_mask_in_softmax(config)
    params = hf.init_params_from(config)
    np.testing.assert_array_equal(np.asarray(params["embed"]),
                                  np.asarray(loaded["llada"][1]["embed"]))
    config.model.mlp_dim = 128
    with pytest.raises(ValueError, match="config.model.mlp_dim=128 but"):
        hf.init_params_from(config)
    assert hf.tokenizer(dirs["llada"]).encode("w3 w5") == [3, 5]


def test_quickstart_from_ar_config(dirs):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs",
                        "quickstart_from_ar.py")
    spec = importlib.util.spec_from_file_location("quickstart_from_ar", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from mdlm_jax.checkpoint.hf_config import configure_from_directory

    config = module.get_config(dirs["llama"])
    assert config.model.init_from == dirs["llama"]  # the directory is read when a command starts
    configure_from_directory(config)
    assert not config.model.causal and config.model.logit_shift
    assert config.model.init_from == os.path.abspath(dirs["llama"])
    assert config.diffusion.mask_id == fx.V and config.model.vocab_size == fx.V + 1
    params = hf.init_params_from(config)
    assert params["embed"].shape == (fx.V + 1, fx.D)


def test_convert_writes_a_workdir(dirs, loaded, tmp_path):
    from mdlm_jax import checkpoint as ckpt
    from mdlm_jax import convert, model_loading

    workdir = str(tmp_path / "work")
    convert.run(dirs["mdlm"], workdir)
    stored = ckpt.read_config(workdir)
    assert stored.model.family == "dit" and stored.diffusion.mask_id == fx.V - 1
    _, params, step = model_loading.load_model(workdir, use_ema=False)
    assert step == 0
    np.testing.assert_array_equal(np.asarray(params["head"]["kernel"]),
                                  np.asarray(loaded["mdlm"][1]["head"]["kernel"]))
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        convert.run(dirs["mdlm"], workdir)


def test_llama31_rope_scaling_matches_transformers_and_round_trips(tmp_path):
    """Llama-3.1's ``rope_type='llama3'`` rescaling: imported logits equal transformers',
    and export writes the same scaling back. Small original context and head dim so that
    all three frequency bands (kept, blended, divided) occur."""
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    model = fx.torch_model("llama", seed=3, rope_scaling=scaling)
    src = str(tmp_path / "llama31")
    model.save_pretrained(src, safe_serialization=True)
    with torch.no_grad():
        want = model(torch.tensor(TOKENS)).logits.numpy()
    cfg, params, apply = hf.load(src)
    assert cfg.rope_scaling == "llama3" and cfg.rope_original_max_length == 16
    np.testing.assert_allclose(logits(apply, params), want, atol=TOL)
    plain = cfg.copy_and_resolve_references()
    plain.rope_scaling = "none"
    from mdlm_jax import model as model_lib

    apply_plain, _ = model_lib.create(plain, jax.random.key(0))
    assert np.abs(logits(apply_plain, params) - want).max() > 10 * TOL, \
        "the scaling made no difference: the test would not catch a missing rescale"
    out = str(tmp_path / "export")
    hf.export(params, cfg, out, family="llama", like=src)
    with open(os.path.join(out, "config.json")) as f:
        written = json.load(f)
    written_scaling = written.get("rope_scaling") or written.get("rope_parameters")
    assert written_scaling["rope_type"] == "llama3" and written_scaling["factor"] == 8.0
    cfg2, params2, _ = hf.load(out)
    assert cfg2.rope_scaling == "llama3"
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
