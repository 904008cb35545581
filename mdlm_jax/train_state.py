"""The train state, the optimizer, sharded initialisation and the pure train step.

The state is a plain dict pytree::

    {"step": int32[], "params": trainable params, "opt_state": optax state,
     "ema": EMA of the trainable params (or None)}

Frozen parameters (the base weights under LoRA) live outside the state: they are an
argument of the step, never differentiated, and carry no optimizer state.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from mdlm_jax import model as model_lib
from mdlm_jax.diffusion import losses
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding
from mdlm_jax.param_trees import combine, partition

# ------------------------------------------------------------------------ optimizer
DECAYS = ("constant", "cosine", "linear")  # optimizer.decay after the warmup


def learning_rate_schedule(opt_cfg, num_steps: int):
    warmup = max(int(opt_cfg.warmup_steps), 0)
    peak = opt_cfg.learning_rate
    decay_steps = max(num_steps - warmup, 1)
    if opt_cfg.decay == "constant":
        after = optax.constant_schedule(peak)
    elif opt_cfg.decay == "cosine":
        after = optax.cosine_decay_schedule(peak, decay_steps, alpha=opt_cfg.min_lr_ratio)
    elif opt_cfg.decay == "linear":
        after = optax.linear_schedule(peak, peak * opt_cfg.min_lr_ratio, decay_steps)
    else:
        raise ValueError(f"optimizer.decay={opt_cfg.decay!r} is unknown; use one of "
                         f"{DECAYS}")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def make_optimizer(opt_cfg, num_steps: int):
    schedule = learning_rate_schedule(opt_cfg, num_steps)
    parts = []
    if opt_cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(opt_cfg.grad_clip))
    parts.append(optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
                             weight_decay=opt_cfg.weight_decay,
                             mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)))
    return optax.chain(*parts), schedule


# ----------------------------------------------------------------------- shardings
class TrainPlan:
    """What a run trains and how it is laid out: apply, the optimizer and its schedule,
    the shardings of params / state / batch, and the split into trainable and frozen."""

    def __init__(self, config, mesh, *, transform=None, trainable_mask_fn=None):
        self.config = config
        self.mesh = mesh
        self.apply, shapes, axes = model_lib.abstract(config.model, transform=transform)
        self.transform = transform
        if trainable_mask_fn is None:
            mask = jax.tree.map(lambda _: True, shapes)
        else:
            mask = trainable_mask_fn(shapes)
        self.mask = mask
        self.trainable_shapes, self.frozen_shapes = partition(shapes, mask)
        self.n_params = model_lib.count_params(shapes)
        self.n_trainable = model_lib.count_params(self.trainable_shapes)
        self.tx, self.schedule = make_optimizer(config.optimizer, config.train.num_steps)
        rules = config.mesh.rules
        self.param_shardings = sharding.param_shardings(axes, shapes, rules, mesh)
        tr_sh, fr_sh = partition(self.param_shardings, mask)
        self.trainable_shardings, self.frozen_shardings = tr_sh, fr_sh
        opt_shapes = jax.eval_shape(self.tx.init, self.trainable_shapes)
        replicated = NamedSharding(mesh, PartitionSpec())
        opt_sh = optax.tree_map_params(
            self.tx, lambda _, s: s, opt_shapes, tr_sh,
            transform_non_params=lambda _: replicated,
            is_leaf=lambda x: isinstance(x, NamedSharding))
        ema = config.optimizer.ema_decay > 0
        self.state_shardings = {"step": replicated, "params": tr_sh, "opt_state": opt_sh,
                                "ema": tr_sh if ema else None}
        self.state_shapes = {
            "step": jax.ShapeDtypeStruct((), jnp.int32),
            "params": self.trainable_shapes,
            "opt_state": opt_shapes,
            "ema": self.trainable_shapes if ema else None,
        }
        data_axes = mesh_lib.batch_spec(mesh)[0]
        self.batch_sharding = NamedSharding(mesh, PartitionSpec(None, data_axes))

    def abstract_state(self):
        return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                            self.state_shapes, self.state_shardings)

    def init_state(self, trainable_params):
        """A fresh state around ``trainable_params`` (already placed/sharded)."""
        ema = self.config.optimizer.ema_decay > 0

        def init(p):
            return {"step": jnp.zeros((), jnp.int32), "params": p,
                    "opt_state": self.tx.init(p),
                    "ema": jax.tree.map(jnp.copy, p) if ema else None}

        with jax.set_mesh(self.mesh):
            return jax.jit(init, out_shardings=self.state_shardings)(trainable_params)

    def random_params(self, key):
        """All parameters, created already sharded (eval_shape -> shardings -> jit)."""
        init = model_lib.init_fn(self.config.model, transform=self.transform)
        with jax.set_mesh(self.mesh):
            return jax.jit(init, out_shardings=self.param_shardings)(key)

    def jit_train_step(self):
        step_fn = functools.partial(train_step, apply=self.apply, tx=self.tx,
                                    config=self.config)
        frozen_sh = self.frozen_shardings if self.frozen_shapes else None
        return jax.jit(step_fn,
                       in_shardings=(self.state_shardings, self.batch_sharding, frozen_sh,
                                     None),
                       out_shardings=(self.state_shardings, None),
                       donate_argnums=(0,))


# ------------------------------------------------------------------------ the step
def train_step(state, batch, frozen, base_key, *, apply, tx, config):
    """One optimizer step over ``grad_accum_steps`` micro-batches (leading batch axis).

    The step RNG is ``fold_in(base_key, step)``, so a resumed run draws the same noise.
    """
    step = state["step"]
    rng = jax.random.fold_in(base_key, step)
    n_micro = jax.tree.leaves(batch)[0].shape[0]

    def loss_fn(trainable, micro, key):
        params = combine(trainable, frozen) if frozen else trainable
        micro = dict(micro, step=step)
        return losses.total_loss(apply, params, micro, key, config)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def accumulate(carry, xs):
        grads_acc, metrics_acc = carry
        micro, i = xs
        (_, metrics), grads = grad_fn(state["params"], micro, jax.random.fold_in(rng, i))
        grads_acc = jax.tree.map(jnp.add, grads_acc, grads)
        metrics_acc = jax.tree.map(jnp.add, metrics_acc, metrics)
        return (grads_acc, metrics_acc), None

    zeros_g = jax.tree.map(jnp.zeros_like, state["params"])
    first_micro = jax.tree.map(lambda x: x[0], batch)
    metric_shapes = jax.eval_shape(lambda: loss_fn(state["params"], first_micro, rng)[1])
    zeros_m = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)
    (grads, metrics), _ = jax.lax.scan(accumulate, (zeros_g, zeros_m),
                                       (batch, jnp.arange(n_micro)))
    grads = jax.tree.map(lambda g: g / n_micro, grads)
    metrics = jax.tree.map(lambda m: m / n_micro, metrics)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    ema = state["ema"]
    if ema is not None:
        decay = config.optimizer.ema_decay
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["param_norm"] = optax.tree.norm(params)
    new_state = {"step": step + 1, "params": params, "opt_state": opt_state, "ema": ema}
    return new_state, metrics
