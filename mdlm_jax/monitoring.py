"""Metrics output (JSON lines + TensorBoard), FLOP accounting and MFU."""

from __future__ import annotations

import json
import math
import os
import time

import jax

from mdlm_jax.model import head_dim, kv_heads
from mdlm_jax.model.layers import TIME_FREQ_DIM

# Dense bf16 peak FLOP/s per device, by jax device_kind prefix (vendor datasheets).
PEAK_FLOPS = {
    "NVIDIA H200": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
}


def peak_flops_per_device(device=None, override: float = 0.0) -> float | None:
    if override > 0:
        return override
    kind = (device or jax.devices()[0]).device_kind
    for prefix, flops in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
        if kind.startswith(prefix):
            return flops
    return None


def per_sequence_params(model_cfg) -> int:
    """Parameters applied once per sequence, not per token: the DiT's time embedding and
    its adaLN modulations act on the [B, cond_dim] time features."""
    if model_cfg.family != "dit":
        return 0
    d, c, freq = model_cfg.d_model, model_cfg.cond_dim, TIME_FREQ_DIM
    time_embed = freq * c + c + c * c + c
    adaln = model_cfg.n_layers * (c * 6 * d + 6 * d) + c * 2 * d + 2 * d
    return time_embed + adaln


def flops_per_token(model_cfg, n_params: int, seq_len: int, *, forward_passes: int = 1,
                    n_frozen: int = 0) -> float:
    """Training FLOPs per token: 6N plus full (bidirectional) attention, no causal halving.

    N excludes the input embedding table (a gather, not a matmul); the DiT's time embedding
    and adaLN weights (``per_sequence_params``) run once per sequence, so they cost
    6 / seq_len per token. Attention costs QK^T and AV: 2 * 2 * L * (heads * head_dim) per
    token and layer forward, x3 for the backward. Frozen weights (LoRA's base) need no
    weight gradient: 4 instead of 6 FLOPs per frozen parameter. ``forward_passes`` scales
    everything (the mask-agnostic term runs two).
    """
    per_seq = per_sequence_params(model_cfg)
    n_matmul = n_params - model_cfg.vocab_size * model_cfg.d_model - per_seq
    n_frozen_matmul = max(n_frozen - model_cfg.vocab_size * model_cfg.d_model, 0) \
        if n_frozen else 0
    attn = 12 * model_cfg.n_layers * seq_len * model_cfg.n_heads * head_dim(model_cfg)
    return forward_passes * (6 * n_matmul + 6 * per_seq / seq_len - 2 * n_frozen_matmul
                             + attn)


# Recomputed in the backward pass by each remat policy, per layer: the layer's forward
# less its last matmul (the MLP's down projection, whose output only the next layer reads,
# and that layer saves its input: JAX drops the recomputation), the
# attention's batched matmuls only (the weight matmuls' outputs are saved), or no matmul
# at all (elementwise work only, not counted).
_REMAT_RECOMPUTES = {"none": "nothing", "everything_saveable": "nothing",
                     "dots_saveable": "nothing", "checkpoint_dots": "nothing",
                     "full": "layer", "nothing_saveable": "layer",
                     "dots_with_no_batch_dims_saveable": "attention",
                     "checkpoint_dots_with_no_batch_dims": "attention"}


def remat_flops_per_token(model_cfg, seq_len: int, *, forward_passes: int = 1,
                          lora_cfg=None):
    """FLOPs per token that ``model.remat_policy`` adds by recomputing forward matmuls in
    the backward pass (not part of :func:`flops_per_token`), LoRA adapters on the
    recomputed projections included, or None for a policy not modelled here."""
    kind = _REMAT_RECOMPUTES.get(model_cfg.remat_policy)
    if kind is None:
        return None
    d, k, f = model_cfg.d_model, head_dim(model_cfg), model_cfg.mlp_dim
    h, kv = model_cfg.n_heads, kv_heads(model_cfg)
    attention = 4 * seq_len * h * k  # QK^T and AV, forward
    # (in, out) of each projection recomputed by a full remat (all but the down projection)
    shapes = {"q": (d, h * k), "k": (d, kv * k), "v": (d, kv * k), "o": (h * k, d),
              "up": (d, f)}
    if model_cfg.family == "llama":
        shapes["gate"] = (d, f)
    else:  # the DiT's MLP input projection
        shapes = {**shapes, "fc_in": shapes.pop("up")}
    matmul = sum(i * o for i, o in shapes.values())
    if lora_cfg is not None and lora_cfg.rank:
        matmul += sum(lora_cfg.rank * (i + o) for name, (i, o) in shapes.items()
                      if name in tuple(lora_cfg.targets))
    per_layer = {"nothing": 0, "attention": attention,
                 "layer": attention + 2 * matmul}[kind]
    return forward_passes * model_cfg.n_layers * per_layer


class MetricsWriter:
    """``metrics.jsonl`` (one JSON object per logged step) plus TensorBoard event files."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled and jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:  # pragma: no cover - tensorboardX is a dependency
                self._tb = None

    def write(self, step: int, metrics: dict, kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "kind": kind, "time": time.time()}
        row.update({k: _py(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                v = _py(v)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _py(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def require_finite(result: dict, what: str, fix: str) -> dict:
    """``result`` when every number in it is finite; else an error naming the metrics and
    ``fix`` (no command writes a non-finite result)."""
    bad = sorted(k for k, v in result.items()
                 if isinstance(v, (int, float)) and not math.isfinite(v))
    if bad:
        raise FloatingPointError(
            f"{what} is not finite ({', '.join(f'{k}={result[k]}' for k in bad)}); nothing "
            f"was written. {fix}")
    return result


def unused_path(folder: str, name: str, ext: str = ".jsonl") -> str:
    """``folder/name.ext``, or ``name_1``, ``name_2``... when taken: results never overwrite
    earlier ones."""
    path, n = os.path.join(folder, name + ext), 0
    while os.path.exists(path):
        n += 1
        path = os.path.join(folder, f"{name}_{n}{ext}")
    return path


def read_metrics(workdir: str, kind: str | None = None) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if kind is None or r["kind"] == kind]
