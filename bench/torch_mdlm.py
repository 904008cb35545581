"""A PyTorch MDLM training step: the reference point of the JAX throughput benchmark.

The model is MDLM's DDiT (Sahoo et al. 2024; ``models/dit.py`` of kuleshov-group/mdlm),
written out here with the same structure and parameter names:

- ``vocab_embed`` table, ``sigma_map`` (sinusoidal features of 256 -> MLP -> SiLU),
- blocks: weight-only LayerNorm in float32, adaLN-zero modulation (shift, scale, gate for
  attention and for the MLP), one fused ``attn_qkv`` projection without bias, rotary
  embeddings (half-split), attention through ``F.scaled_dot_product_attention`` (flash /
  memory-efficient kernels on CUDA), ``attn_out`` without bias, GELU-tanh MLP with biases,
- ``output_layer``: adaLN-modulated LayerNorm and an untied linear head with bias.

The loss is MDLM's continuous-time NELBO with the SUBS parameterization and the log-linear
schedule: antithetic t with an eps floor of 1e-3, mask probability (1 - 1e-3) t, the mask
logit suppressed, cross-entropy on masked positions only, weight 1/t, divided by the number
of tokens. The step is AdamW + global-norm clipping + EMA, under bf16 autocast on CUDA.

Differences from the MDLM code, each deliberate: dropout defaults to 0 (MDLM trains OWT with
0.1; the JAX model has none, and the benchmark compares equal work: ``--dropout 0.1`` restores
it); SDPA instead of the flash-attn package; the loss is computed from float32 logits.

    python bench/torch_mdlm.py --batch 32 --seq_len 1024 --steps 20 --json torch.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class DiTConfig:
    vocab_size: int = 50258
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    mlp_dim: int = 3072
    cond_dim: int = 128
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    mask_id: int = 50257
    time_conditioning: bool = False


# ------------------------------------------------------------------------------ layers
class LayerNorm(nn.Module):
    """Weight-only LayerNorm, statistics in float32 whatever the autocast dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.dim, self.eps = dim, eps

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.layer_norm(x.float(), [self.dim], eps=self.eps)
        return x * self.weight[None, None, :]


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def rotary_tables(length: int, head_dim: int, theta: float, device):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    freqs = torch.outer(torch.arange(length, device=device).float(), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()  # [L, K]


def apply_rotary(x_BxLxHxK, cos, sin):
    x = x_BxLxHxK.float()
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    out = x * cos[None, :, None, :] + rotated * sin[None, :, None, :]
    return out.to(x_BxLxHxK.dtype)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden))

    def forward(self, t_B):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0)
                          * torch.arange(half, dtype=torch.float32, device=t_B.device) / half)
        args = t_B.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class DDiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.norm1 = LayerNorm(d, cfg.norm_eps)
        self.attn_qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.norm2 = LayerNorm(d, cfg.norm_eps)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.mlp_dim, d))
        self.adaLN_modulation = nn.Linear(cfg.cond_dim, 6 * d)
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x, rotary, c):
        b, length, d = x.shape
        (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp,
         gate_mlp) = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        h = modulate(self.norm1(x), shift_msa, scale_msa)
        qkv = self.attn_qkv(h).view(b, length, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.unbind(dim=2)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2))
        h = h.transpose(1, 2).reshape(b, length, d)
        drop = self.dropout if self.training else 0.0
        x = x + gate_msa * F.dropout(self.attn_out(h), drop, self.training)
        h = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x + gate_mlp * F.dropout(h, drop, self.training)


class DDitFinalLayer(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm_final = LayerNorm(cfg.d_model, cfg.norm_eps)
        self.linear = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.adaLN_modulation = nn.Linear(cfg.cond_dim, 2 * cfg.d_model)
        for p in (*self.linear.parameters(), *self.adaLN_modulation.parameters()):
            nn.init.zeros_(p)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DIT(nn.Module):
    """``forward(indices_BxL, sigma_B) -> logits_BxLxV`` (autocast dtype of the caller)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model={cfg.d_model} is not divisible by n_heads={cfg.n_heads}")
        self.cfg = cfg
        self.vocab_embed = nn.Parameter(torch.empty(cfg.vocab_size, cfg.d_model))
        nn.init.kaiming_uniform_(self.vocab_embed, a=math.sqrt(5))
        self.sigma_map = TimestepEmbedder(cfg.cond_dim)
        self.blocks = nn.ModuleList(DDiTBlock(cfg) for _ in range(cfg.n_layers))
        self.output_layer = DDitFinalLayer(cfg)

    def forward(self, indices_BxL, sigma_B):
        x = self.vocab_embed[indices_BxL]
        c = F.silu(self.sigma_map(sigma_B))
        rotary = rotary_tables(indices_BxL.shape[1], self.cfg.d_model // self.cfg.n_heads,
                               self.cfg.rope_theta, indices_BxL.device)
        for block in self.blocks:
            x = block(x, rotary, c)
        return self.output_layer(x, c)


# -------------------------------------------------------------------------------- loss
def sample_t(batch: int, device, eps: float = 1e-3):
    """MDLM's antithetic (stratified) times with an eps floor."""
    u = torch.rand(batch, device=device)
    u = (u / batch + torch.arange(batch, device=device) / batch) % 1
    return (1 - eps) * u + eps


def mdlm_loss(model: DIT, x0_BxL, *, noise_eps: float = 1e-3, sampling_eps: float = 1e-3):
    """Continuous-time NELBO, SUBS, log-linear schedule; per token (MDLM's normalization)."""
    cfg = model.cfg
    b = x0_BxL.shape[0]
    t = sample_t(b, x0_BxL.device, sampling_eps)
    move_chance = (1 - noise_eps) * t  # 1 - exp(-sigma(t)) for the log-linear schedule
    masked = torch.rand(x0_BxL.shape, device=x0_BxL.device) < move_chance[:, None]
    xt = torch.where(masked, cfg.mask_id, x0_BxL)
    sigma = -torch.log1p(-move_chance)
    if not cfg.time_conditioning:
        sigma = torch.zeros_like(sigma)
    logits = model(xt, sigma).float()
    suppress = torch.zeros(cfg.vocab_size, device=logits.device)
    suppress[cfg.mask_id] = -1e9
    nll = F.cross_entropy((logits + suppress).flatten(0, 1), x0_BxL.flatten(),
                          reduction="none").view_as(x0_BxL)
    # dsigma / expm1(sigma) = 1 / t for the log-linear schedule.
    per_token = torch.where(masked, nll, 0.0) / t[:, None]
    return per_token.sum() / x0_BxL.numel()


# -------------------------------------------------------------------------------- step
class Trainer:
    """AdamW (MDLM: b2 0.999, no weight decay) + clip 1.0 + EMA, optional bf16 autocast."""

    def __init__(self, model: DIT, *, lr: float = 3e-4, grad_clip: float = 1.0,
                 ema_decay: float = 0.9999, amp_dtype=None, compile: bool = False):
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        cuda = self.params[0].is_cuda
        self.opt = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=0.0, fused=cuda, foreach=None if cuda else True)
        self.grad_clip = grad_clip
        self.ema_decay = ema_decay
        self.ema = [p.detach().clone() for p in self.params] if ema_decay > 0 else None
        self.amp_dtype = amp_dtype
        self.loss_fn = torch.compile(mdlm_loss) if compile else mdlm_loss

    def step(self, x0_BxL):
        self.model.train()
        device = x0_BxL.device.type
        with torch.autocast(device_type=device, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            loss = self.loss_fn(self.model, x0_BxL)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, self.params, 1.0 - self.ema_decay)
        return loss.detach()


# ------------------------------------------------------------------- JAX parameter copy
def load_jax_params(model: DIT, params: dict) -> None:
    """Copy a ``mdlm_jax`` DiT params pytree (``family='dit'``) into ``model``."""
    a = lambda x: torch.from_numpy(np.array(x, dtype=np.float32))  # noqa: E731
    lin = lambda layer, p: (layer.weight.copy_(a(p["kernel"]).T),  # noqa: E731
                            layer.bias.copy_(a(p["bias"])))
    d = model.cfg.d_model
    with torch.no_grad():
        model.vocab_embed.copy_(a(params["embed"]))
        lin(model.sigma_map.mlp[0], params["time_embed"]["mlp_in"])
        lin(model.sigma_map.mlp[2], params["time_embed"]["mlp_out"])
        blocks = params["blocks"]
        for i, block in enumerate(model.blocks):
            at = lambda tree, i=i: {k: v[i] for k, v in tree.items()}  # noqa: E731
            block.norm1.weight.copy_(a(blocks["attn_norm"]["scale"][i]))
            block.norm2.weight.copy_(a(blocks["mlp_norm"]["scale"][i]))
            qkv = [a(blocks["attn"][n]["kernel"][i]).reshape(d, -1) for n in ("q", "k", "v")]
            block.attn_qkv.weight.copy_(torch.cat(qkv, dim=1).T)
            block.attn_out.weight.copy_(a(blocks["attn"]["o"]["kernel"][i]).reshape(-1, d).T)
            lin(block.mlp[0], at(blocks["fc_in"]))
            lin(block.mlp[2], at(blocks["fc_out"]))
            lin(block.adaLN_modulation, at(blocks["adaln"]))
        model.output_layer.norm_final.weight.copy_(a(params["final_norm"]["scale"]))
        lin(model.output_layer.adaLN_modulation, params["final_adaln"])
        lin(model.output_layer.linear, params["head"])


# --------------------------------------------------------------------------- benchmark
def peak_memory(device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "max RSS (process)"


def benchmark(cfg: DiTConfig, *, batch: int, seq_len: int, steps: int, warmup: int,
              dtype: str = "bfloat16", device: str = "auto", compile: bool = False,
              seed: int = 0) -> dict:
    """Times ``steps`` train steps on one synthetic batch after ``warmup`` steps."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(seed)
    model = DIT(cfg).to(dev)
    amp = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None}[dtype]
    trainer = Trainer(model, amp_dtype=amp, compile=compile)
    x0 = torch.randint(0, cfg.mask_id, (batch, seq_len), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    losses = []
    for _ in range(warmup):
        losses.append(trainer.step(x0))
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(trainer.step(x0))
        sync()
        times.append(time.perf_counter() - start)
    step_time = statistics.median(times)
    mem, mem_source = peak_memory(dev)
    return {
        "framework": "pytorch", "torch": torch.__version__, "device": _device_name(dev),
        "dtype": dtype, "compile": compile, "batch": batch, "seq_len": seq_len,
        "n_params": sum(p.numel() for p in model.parameters()),
        "step_time_s": step_time, "step_times_s": times,
        "tokens_per_s": batch * seq_len / step_time,
        "peak_memory_bytes": mem, "memory_source": mem_source,
        "loss_first": float(losses[0]), "loss_last": float(losses[-1]),
    }


def _device_name(dev) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({torch.get_num_threads()} threads)"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = DiTConfig()
    for f in dataclasses.fields(DiTConfig):
        if f.type in ("int", "float"):
            p.add_argument(f"--{f.name}", type=int if f.type == "int" else float,
                           default=getattr(defaults, f.name))
    p.add_argument("--time_conditioning", action="store_true")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward + loss")
    p.add_argument("--json", default="", help="write the result to this file")
    args = p.parse_args(argv)
    cfg = DiTConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DiTConfig)})
    result = benchmark(cfg, batch=args.batch, seq_len=args.seq_len, steps=args.steps,
                       warmup=args.warmup, dtype=args.dtype, device=args.device,
                       compile=args.compile)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    short = {k: v for k, v in result.items() if k != "step_times_s"}
    json.dump(short, sys.stdout, indent=1)
    print()
    return result


if __name__ == "__main__":
    main()
