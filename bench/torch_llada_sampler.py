"""LLaDA's published sampling loop in PyTorch, over the llama family of mdlm_jax.

The loop follows LLaDA's ``generate.py``: semi-autoregressive blocks, LLaDA's
``get_num_transfer_tokens``, ``add_gumbel_noise`` in float64, ``low_confidence`` or
``random`` remasking and one full forward pass per step (no cache, no CFG). With
``threshold`` it is Fast-dLLM's uncached ``generate`` instead: every masked token of the
block whose confidence is >= threshold, and always the most confident one, until the
block is decoded. ``suppress_mask=False`` is the published code (the mask token stays in
the softmax, and an argmax on it leaves the position masked); ``suppress_mask=True`` sets
the mask logit to -inf first, like mdlm_jax's ``sampler.mask_in_softmax='drop'``.

The model is RMSNorm + SwiGLU + RoPE (half-split) + bidirectional attention through
``F.scaled_dot_product_attention``, with weights copied from mdlm_jax's params pytree
(:meth:`TorchLlama.from_jax`), so that its logits match ``apply`` to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class TorchLlama(torch.nn.Module):
    def __init__(self, weights: dict, *, n_layers: int, eps: float, theta: float):
        super().__init__()
        self.w = {k: torch.nn.Parameter(v, requires_grad=False) for k, v in weights.items()}
        for k, v in self.w.items():
            self.register_parameter(k.replace(".", "_"), v)
        self.n_layers, self.eps, self.theta = n_layers, eps, theta

    @classmethod
    def from_jax(cls, params, model_cfg) -> TorchLlama:
        if model_cfg.family != "llama" or model_cfg.causal or model_cfg.logit_shift:
            raise ValueError("TorchLlama mirrors the bidirectional llama family only")
        blocks = params["blocks"]
        w = {"embed": params["embed"], "final_norm": params["final_norm"]["scale"],
             "head": (params["embed"].T if model_cfg.tie_embeddings
                      else params["head"]["kernel"]),
             "attn_norm": blocks["attn_norm"]["scale"], "mlp_norm": blocks["mlp_norm"]["scale"],
             "gate": blocks["gate"]["kernel"], "up": blocks["up"]["kernel"],
             "down": blocks["down"]["kernel"], "o": blocks["attn"]["o"]["kernel"]}
        for name in ("q", "k", "v"):
            w[name] = blocks["attn"][name]["kernel"]
            if "bias" in blocks["attn"][name]:
                w[name + "_bias"] = blocks["attn"][name]["bias"]
        w = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in w.items()}
        return cls(w, n_layers=model_cfg.n_layers, eps=model_cfg.norm_eps,
                   theta=model_cfg.rope_theta)

    def _rms(self, x, scale):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * scale

    def _rope(self, length, dim, device):
        inv = 1.0 / (self.theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv)
        emb = torch.cat([freqs, freqs], -1).to(device)
        return emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]

    @staticmethod
    def _rotate(x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    def forward(self, tokens):
        w = self.w
        x = w["embed"][tokens]
        heads, dim = w["q"].shape[-2:]
        cos, sin = self._rope(tokens.shape[1], dim, x.device)
        for i in range(self.n_layers):
            h = self._rms(x, w["attn_norm"][i])
            qkv = []
            for name in ("q", "k", "v"):
                y = torch.einsum("bld,dhk->blhk", h, w[name][i])
                if name + "_bias" in w:
                    y = y + w[name + "_bias"][i]
                qkv.append(y)
            q, k, v = qkv
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            rep = heads // k.shape[2]
            if rep > 1:
                k, v = k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                 v.transpose(1, 2)).transpose(1, 2)
            x = x + torch.einsum("blhk,hkd->bld", out, w["o"][i])
            h = self._rms(x, w["mlp_norm"][i])
            h = F.silu(h @ w["gate"][i]) * (h @ w["up"][i])
            x = x + h @ w["down"][i]
        return self._rms(x, w["final_norm"]) @ w["head"]


def add_gumbel_noise(logits, temperature):
    """LLaDA: float64 Gumbel-max, ``exp(l) / (-log u)^T``."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits, dtype=torch.float64)
    gumbel_noise = (-torch.log(noise)) ** temperature
    return logits.exp() / gumbel_noise


def get_num_transfer_tokens(mask_index, steps):
    mask_num = mask_index.sum(dim=1, keepdim=True)
    base = mask_num // steps
    remainder = mask_num % steps
    num = torch.zeros(mask_num.size(0), steps, device=mask_index.device,
                      dtype=torch.int64) + base
    for i in range(mask_num.size(0)):
        num[i, : remainder[i]] += 1
    return num


@torch.no_grad()
def generate(model, prompt, *, steps, gen_length, block_length, temperature=0.0,
             remasking="low_confidence", mask_id, extra_masks=0, suppress_mask=True,
             threshold=None):
    """LLaDA's ``generate`` (+ ``extra_masks`` masks after the region, never decoded), or
    Fast-dLLM's with ``threshold``; returns ``(tokens, model calls)``."""
    b, p = prompt.shape
    x = torch.full((b, p + gen_length + extra_masks), mask_id, dtype=torch.long,
                   device=prompt.device)
    x[:, :p] = prompt
    assert gen_length % block_length == 0
    num_blocks = gen_length // block_length
    assert steps % num_blocks == 0
    steps = steps // num_blocks
    calls = 0
    for nb in range(num_blocks):
        lo, hi = p + nb * block_length, p + (nb + 1) * block_length
        block_mask_index = x[:, lo:hi] == mask_id
        num_transfer_tokens = get_num_transfer_tokens(block_mask_index, steps)
        i = 0
        # Fast-dLLM loops until the block is decoded; with the mask kept in the softmax a
        # position whose argmax is the mask stays masked, so (like mdlm_jax) stop after
        # block_length steps
        while (i < steps) if threshold is None else \
                (bool((x[:, lo:hi] == mask_id).any()) and i < block_length):
            mask_index = x == mask_id
            logits = model(x)
            calls += 1
            if suppress_mask and mask_id < logits.shape[-1]:
                logits[..., mask_id] = -torch.inf
            x0 = torch.argmax(add_gumbel_noise(logits, temperature), dim=-1)
            if remasking == "low_confidence":
                prob = F.softmax(logits, dim=-1)
                x0_p = torch.gather(prob, -1, x0[..., None])[..., 0]
            elif remasking == "random":
                x0_p = torch.rand(x0.shape, device=x0.device)
            else:
                raise NotImplementedError(remasking)
            x0_p[:, hi:] = -np.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -np.inf)
            transfer_index = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(confidence.shape[0]):
                if threshold is not None:  # Fast-dLLM: above tau, at least the best one
                    transfer_index[j] = mask_index[j] & (confidence[j] >= threshold)
                    transfer_index[j, torch.argmax(confidence[j])] = mask_index[j].any()
                    continue
                _, select_index = torch.topk(confidence[j], k=int(num_transfer_tokens[j, i]))
                transfer_index[j, select_index] = True
            x[transfer_index] = x0[transfer_index]
            i += 1
    return x, calls
