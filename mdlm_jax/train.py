"""The training loop: ``run(config, workdir)``.

Resumes automatically from the latest checkpoint in ``workdir`` (state and data
iterator together), saves every ``checkpoint.every_steps`` and on SIGTERM, reads
metrics one step late, and stops with a clear message on a non-finite loss, keeping the
last good checkpoint. A state is saved only when its numbers and its own loss are finite;
one ``train`` holds the workdir at a time (``checkpoint.workdir_lock``); a damaged newest
checkpoint, settings that do not fit the saved layout and a full disk are one clear line
(``checkpoint.integrity``), with every earlier checkpoint kept.
"""

from __future__ import annotations

import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import model_loading, monitoring
from mdlm_jax.checkpoint import integrity, workdir_lock
from mdlm_jax.checks import check_batch_tokens, validate_config
from mdlm_jax.data import pipeline
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding
from mdlm_jax.param_trees import flatten, partition, unflatten
from mdlm_jax.train_hooks import NonFiniteLossError, TrainRun, hooks_from_config
from mdlm_jax.train_state import TrainPlan

__all__ = ["NonFiniteLossError", "initial_params", "make_plan", "run"]


def make_plan(config, mesh) -> TrainPlan:
    transform = model_loading.lora_transform(config)
    mask_fn = None
    if transform is not None:
        from mdlm_jax.model import lora

        mask_fn = lora.trainable_mask
    return TrainPlan(config, mesh, transform=transform, trainable_mask_fn=mask_fn)


def initial_params(plan: TrainPlan, config, key):
    """All parameters at step 0: from ``model.init_from`` (a HF directory),
    ``checkpoint.restore_from`` (another workdir) or a fresh random init."""
    params = plan.random_params(key)
    loaded = model_loading.base_params(config, plan.mesh)
    if loaded is not None:
        source = config.model.init_from or config.checkpoint.restore_from
        params = _overlay(params, loaded, plan.param_shardings, source)
    return params


def _overlay(params, loaded, shardings, source):
    """``loaded`` over ``params`` (new leaves, e.g. LoRA adapters, keep their init)."""
    loaded, shardings = flatten(loaded), flatten(shardings)
    out = flatten(params)
    for k, v in out.items():
        if k in loaded:
            if tuple(loaded[k].shape) != tuple(v.shape):
                raise ValueError(f"{source}: parameter {k} has shape {loaded[k].shape}, "
                                 f"the configured model needs {v.shape}; make config.model "
                                 "match the source")
            out[k] = jax.device_put(loaded[k].astype(v.dtype), shardings[k])
    return unflatten(out)


def _check_resume_shapes(workdir, step, plan):
    stored = ckpt.stored_shapes(workdir, step, "state")
    if stored is None or "params" not in stored:
        return
    want = jax.tree.map(lambda s: tuple(s.shape), plan.trainable_shapes)
    flat_want, flat_have = flatten(want), flatten(stored["params"])
    for k in sorted(set(flat_want) | set(flat_have)):
        if flat_want.get(k) != flat_have.get(k):
            raise ValueError(
                f"{workdir} holds a checkpoint (step {step}) of a different model: params/{k} "
                f"is {flat_have.get(k)} there but {flat_want.get(k)} in this config; use a "
                "new --workdir or the original model settings (the checkpoint was kept)")


class _Preemption:
    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame):
        # Multi-host jobs agree on the stopping step through orbax's preemption sync point.
        self.requested = jax.process_count() == 1

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _global_batch(plan, micro_batches):
    local = {k: np.stack([b[k] for b in micro_batches]) for k in micro_batches[0]}
    return {k: jax.make_array_from_process_local_data(plan.batch_sharding, v)
            for k, v in local.items()}


def run(config, workdir: str) -> dict:
    """Train ``config`` in ``workdir``; returns a summary (losses, eval, steps)."""
    mesh_lib.maybe_initialize_distributed()
    validate_config(config)
    with workdir_lock.held(workdir):
        return _run(config, workdir)


def _run(config, workdir: str) -> dict:
    mesh = mesh_lib.make_mesh(config.mesh)
    mesh_lib.check_batch(config.data.global_batch_size, mesh)
    plan = make_plan(config, mesh)
    log = print if jax.process_index() == 0 else (lambda *a, **k: None)
    log(f"model: {plan.n_params:,} parameters ({plan.n_trainable:,} trainable); mesh "
        f"{dict(zip(mesh.axis_names, mesh.devices.shape))}; {jax.device_count()} devices, "
        f"{jax.process_count()} processes")
    data_it = pipeline.make_iterator(config.data, config.data.train_split,
                                     global_batch_size=config.data.global_batch_size,
                                     seed=config.seed)
    base_key = jax.random.key(config.seed)
    mngr = ckpt.make_manager(workdir, config.checkpoint)
    try:
        latest = integrity.resume_step(workdir, config)
        frozen = None
        with jax.set_mesh(mesh), sharding.logical_rules(config.mesh.rules):
            if latest is not None and "state" in ckpt.items_at(workdir, latest):
                restored = _restore_state(workdir, latest, plan, mngr, data_it)
                state = restored["state"]
                if plan.frozen_shapes:
                    _, frozen = partition(initial_params(plan, config, base_key), plan.mask)
                log(f"Resumed from step {int(state['step'])} of {workdir}")
            else:
                if latest is not None:  # a params-only checkpoint written by `convert`
                    _, params, _ = model_loading.load_model(workdir, config, mesh=mesh,
                                                            use_ema=False, step=latest)
                    params = _overlay(plan.random_params(base_key), params,
                                      plan.param_shardings, workdir)
                    log(f"Starting from the converted parameters at step {latest} of {workdir}")
                else:
                    params = initial_params(plan, config, base_key)
                trainable, frozen = partition(params, plan.mask)
                state = plan.init_state(trainable)
            ckpt.write_config(workdir, config)
            start = int(state["step"])
            train_run = TrainRun(config, workdir, plan, mngr, state, frozen, data_it, base_key,
                                 monitoring.MetricsWriter(workdir), log, start,
                                 last_saved=start if mngr.latest_step() is not None else None,
                                 last_finite=start)
            summary = _loop(train_run)
    except BaseException:
        integrity.close(mngr, workdir, failing=True)  # the first error is the one reported
        raise
    integrity.close(mngr, workdir)
    return summary


def _restore_state(workdir, step, plan, mngr, data_it):
    try:
        _check_resume_shapes(workdir, step, plan)
        return ckpt.read_step(mngr, step, ocp.args.Composite(
            state=ocp.args.StandardRestore(plan.abstract_state()),
            data=_grain_restore(data_it)))
    except ckpt.UnreadableCheckpoint as e:
        fallback, _ = integrity.newest_intact_step(workdir, skip=[(step, str(e))])
        integrity.refuse_damaged(workdir, [(step, str(e))], fallback)


def _synced_preemption(mngr, step) -> bool:
    """Multi-host: every process agrees on the step at which to save and stop."""
    return jax.process_count() > 1 and mngr.reached_preemption(step)


def _grain_restore(data_it):
    import grain

    return grain.checkpoint.CheckpointRestore(data_it)


def _loop(run: TrainRun) -> dict:
    """Optimizer steps, the hooks of ``train_hooks.hooks_from_config`` around them."""
    config, tcfg = run.config, run.config.train
    step_fn = run.plan.jit_train_step()
    accum = config.optimizer.grad_accum_steps
    bar = tqdm(total=tcfg.num_steps, initial=run.start, disable=not tcfg.progress_bar
               or jax.process_index() != 0, dynamic_ncols=True)
    hooks = hooks_from_config(config, run.plan, bar)
    for hook in hooks:
        hook.before_training(run)

    def fetch(*, last=False):
        step, host = run.host_metrics()
        run.history.append((step, host["loss"]))
        for hook in hooks:
            hook.on_metrics(run, step, host, last=last)

    with _Preemption() as preempt:
        for step in range(run.start, tcfg.num_steps):
            micro = [next(run.data_it) for _ in range(accum)]
            if tcfg.check_token_ids:
                for b in micro:
                    check_batch_tokens(b["tokens"], config, b.get("valid"))
            run.batch = _global_batch(run.plan, micro)
            run.state, metrics = step_fn(run.state, run.batch, run.frozen, run.base_key)
            if run.pending is not None:
                fetch()
            run.pending = (step + 1, metrics)
            bar.update(1)
            done = step + 1
            run.preempted = preempt.requested or _synced_preemption(run.mngr, done)
            for hook in hooks:
                if hook.due(run, done):
                    hook.after_step(run, done)
            if run.preempted:
                preempt.requested = True
                break
    if run.pending is not None:
        fetch(last=True)
    for hook in hooks:
        hook.after_loop(run)
    summary = {"start_step": run.start, "end_step": int(run.state["step"]),
               "losses": run.history}
    if run.start >= tcfg.num_steps:
        run.log(f"Nothing to train: the checkpoint is at step {run.start} and "
                f"train.num_steps={tcfg.num_steps}; raise --config.train.num_steps to continue")
    elif int(run.state["step"]) >= tcfg.num_steps and not run.preempted:
        for hook in hooks:
            summary.update(hook.at_end(run))
    run.writer.close()
    for hook in hooks:
        hook.at_exit(run)
    return summary
