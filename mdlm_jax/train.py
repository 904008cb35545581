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
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from mdlm_jax import checkpoint as ckpt
from mdlm_jax import monitoring
from mdlm_jax.checkpoint import integrity, workdir_lock
from mdlm_jax.checks import check_batch_tokens, validate_config
from mdlm_jax.data import pipeline
from mdlm_jax.diffusion import losses
from mdlm_jax.parallel import mesh as mesh_lib
from mdlm_jax.parallel import sharding
from mdlm_jax.param_trees import combine, partition
from mdlm_jax.train_state import Setup


class NonFiniteLossError(FloatingPointError):
    pass


def make_setup(config, mesh) -> Setup:
    transform = ckpt.lora_transform(config)
    mask_fn = None
    if transform is not None:
        from mdlm_jax.model import lora

        mask_fn = lora.trainable_mask
    return Setup(config, mesh, transform=transform, trainable_mask_fn=mask_fn)


def initial_params(setup: Setup, config, key):
    """All parameters at step 0: from ``model.init_from`` (a HF directory),
    ``checkpoint.restore_from`` (another workdir) or a fresh random init."""
    params = setup.random_params(key)
    loaded = ckpt.base_params(config, setup.mesh)
    if loaded is not None:
        source = config.model.init_from or config.checkpoint.restore_from
        params = _overlay(params, loaded, setup.param_shardings, source)
    return params


def _overlay(params, loaded, shardings, source):
    """``loaded`` over ``params`` (new leaves, e.g. LoRA adapters, keep their init)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out[k] = _overlay(v, loaded.get(k, {}), shardings[k], source)
        elif k in loaded:
            if tuple(loaded[k].shape) != tuple(v.shape):
                raise ValueError(f"{source}: parameter {k!r} has shape {loaded[k].shape}, "
                                 f"the configured model needs {v.shape}; make config.model "
                                 "match the source")
            out[k] = jax.device_put(loaded[k].astype(v.dtype), shardings[k])
        else:
            out[k] = v
    return out


def _check_resume_shapes(workdir, step, setup):
    stored = ckpt.stored_shapes(workdir, step, "state")
    if stored is None or "params" not in stored:
        return
    want = jax.tree.map(lambda s: tuple(s.shape), setup.trainable_shapes)
    flat_want, flat_have = _flat_shapes(want), _flat_shapes(stored["params"])
    for k in sorted(set(flat_want) | set(flat_have)):
        if flat_want.get(k) != flat_have.get(k):
            raise ValueError(
                f"{workdir} holds a checkpoint (step {step}) of a different model: params{k} "
                f"is {flat_have.get(k)} there but {flat_want.get(k)} in this config; use a "
                "new --workdir or the original model settings (the checkpoint was kept)")


def _flat_shapes(tree) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, tuple))
    return {jax.tree_util.keystr(k): v for k, v in leaves[0]}


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


def _global_batch(setup, micro_batches):
    local = {k: np.stack([b[k] for b in micro_batches]) for k in micro_batches[0]}
    return {k: jax.make_array_from_process_local_data(setup.batch_sharding, v)
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
    setup = make_setup(config, mesh)
    log = print if jax.process_index() == 0 else (lambda *a, **k: None)
    log(f"model: {setup.n_params:,} parameters ({setup.n_trainable:,} trainable); mesh "
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
                restored = _restore_state(workdir, latest, setup, mngr, data_it)
                state = restored["state"]
                if setup.frozen_shapes:
                    _, frozen = partition(initial_params(setup, config, base_key), setup.mask)
                log(f"Resumed from step {int(state['step'])} of {workdir}")
            else:
                if latest is not None:  # a params-only checkpoint written by `convert`
                    _, params, _ = ckpt.restore_params(workdir, config, mesh=mesh, use_ema=False,
                                                       step=latest)
                    params = _overlay(setup.random_params(base_key), params,
                                      setup.param_shardings, workdir)
                    log(f"Starting from the converted parameters at step {latest} of {workdir}")
                else:
                    params = initial_params(setup, config, base_key)
                trainable, frozen = partition(params, setup.mask)
                state = setup.init_state(trainable)
            ckpt.write_config(workdir, config)
            writer = monitoring.MetricsWriter(workdir)
            if int(state["step"]) == 0 and config.loss.terms.get("mask_agnostic", 0):
                _invariance(config, workdir, setup, state, frozen, "before", writer, log)
            summary = _loop(config, workdir, setup, mngr, state, frozen, data_it, base_key,
                            writer, log)
    except BaseException:
        integrity.close(mngr, workdir, failing=True)  # the first error is the one reported
        raise
    integrity.close(mngr, workdir)
    return summary


def _restore_state(workdir, step, setup, mngr, data_it):
    try:
        _check_resume_shapes(workdir, step, setup)
        return ckpt.read_step(mngr, step, ocp.args.Composite(
            state=ocp.args.StandardRestore(setup.abstract_state()),
            data=_grain_restore(data_it)))
    except ckpt.UnreadableCheckpoint as e:
        fallback, _ = integrity.newest_intact_step(workdir, skip=[(step, str(e))])
        integrity.refuse_damaged(workdir, [(step, str(e))], fallback)


def _state_check_fn(setup, config):
    """``(loss, all_finite)`` of a state: its own loss on the first micro-batch of
    ``batch`` and whether every float in it (params, optimizer state, EMA) is finite."""
    def check(state, batch, frozen, base_key):
        step = state["step"]
        params = combine(state["params"], frozen) if frozen else state["params"]
        micro = dict(jax.tree.map(lambda x: x[0], batch), step=step)
        loss, _ = losses.total_loss(setup.apply, params, micro,
                                    jax.random.fold_in(base_key, step), config)
        floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        return loss, jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats]))

    frozen_sh = setup.frozen_shardings if setup.frozen_shapes else None
    return jax.jit(check, in_shardings=(setup.state_shardings, setup.batch_sharding,
                                        frozen_sh, None))


def _diverged(what, workdir, last_finite, last_saved, every) -> NonFiniteLossError:
    if last_saved is not None:
        kept = (f"The newest checkpoint with a finite state, step {last_saved} in {workdir}, "
                "is kept")
        again = "resume"
    else:
        kept = f"No checkpoint of this run was written (checkpoint.every_steps={every})"
        again = "start again"
    return NonFiniteLossError(
        f"{what}; stopping without saving it. The state was last finite at step "
        f"{last_finite}. {kept}; lower optimizer.learning_rate or raise "
        f"optimizer.warmup_steps and {again}")


def _synced_preemption(mngr, step) -> bool:
    """Multi-host: every process agrees on the step at which to save and stop."""
    return jax.process_count() > 1 and mngr.reached_preemption(step)


def _grain_restore(data_it):
    import grain

    return grain.checkpoint.CheckpointRestore(data_it)


def _grain_save(data_it):
    import grain

    return grain.checkpoint.CheckpointSave(data_it)


def _loop(config, workdir, setup, mngr, state, frozen, data_it, base_key, writer, log):
    step_fn = setup.jit_train_step()
    tcfg = config.train
    start = int(state["step"])
    accum = config.optimizer.grad_accum_steps
    seq_len = config.data.seq_len
    tokens_per_step = config.data.global_batch_size * accum * seq_len
    passes = 2 if config.loss.terms.get("mask_agnostic", 0) else 1
    fpt = monitoring.flops_per_token(config.model, setup.n_params, seq_len,
                                     forward_passes=passes,
                                     n_frozen=setup.n_params - setup.n_trainable)
    peak = monitoring.peak_flops_per_device(override=tcfg.peak_flops_per_device)
    bar = tqdm(total=tcfg.num_steps, initial=start, disable=not tcfg.progress_bar
               or jax.process_index() != 0, dynamic_ncols=True)
    pending = None
    history = []
    last_good = start if mngr.latest_step() is not None else None
    last_finite = start
    check_state = _state_check_fn(setup, config)
    t_last, steps_since = time.perf_counter(), 0

    def fetch(pending):
        nonlocal last_finite
        step, metrics = pending
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not np.isfinite(host["loss"]):  # the loss at `step` is that of state step - 1
            raise _diverged(f"loss is {host['loss']} at step {step}", workdir, last_finite,
                            last_good, config.checkpoint.every_steps)
        last_finite = max(last_finite, step - 1)
        return step, host

    with _Preemption() as preempt:
        for step in range(start, tcfg.num_steps):
            micro = [next(data_it) for _ in range(accum)]
            if tcfg.check_token_ids:
                for b in micro:
                    check_batch_tokens(b["tokens"], config)
            batch = _global_batch(setup, micro)
            state, metrics = step_fn(state, batch, frozen, base_key)
            steps_since += 1
            if pending is not None:
                done_step, host = fetch(pending)
                history.append((done_step, host["loss"]))
                if done_step % tcfg.log_every == 0 or done_step == start + 1:
                    now = time.perf_counter()
                    dt = (now - t_last) / max(steps_since - 1, 1)
                    tps = tokens_per_step / dt
                    host.update(tokens_per_s=tps, step_time_s=dt,
                                learning_rate=float(setup.schedule(done_step)))
                    if peak:
                        host["mfu"] = fpt * tps / (peak * jax.device_count())
                    writer.write(done_step, host)
                    t_last, steps_since = now, 1
                    bar.set_postfix(loss=f"{host['loss']:.3f}", tok_s=f"{tps:,.0f}",
                                    mfu=f"{host['mfu']:.1%}" if peak else "n/a")
            pending = (step + 1, metrics)
            bar.update(1)
            done = step + 1
            stop = preempt.requested or _synced_preemption(mngr, done)
            if done % config.checkpoint.every_steps == 0 or stop or done == tcfg.num_steps:
                _, host = fetch(pending)
                loss, finite = jax.device_get(check_state(state, batch, frozen, base_key))
                if not (finite and np.isfinite(loss)):  # never save a diverged state
                    raise _diverged(f"the state at step {done} holds non-finite numbers or "
                                    f"gives a non-finite loss ({float(loss)})", workdir,
                                    last_finite, last_good, config.checkpoint.every_steps)
                last_finite = done
                integrity.save(mngr, workdir, done, ocp.args.Composite(
                    state=ocp.args.StandardSave(state), data=_grain_save(data_it)))
                last_good = done
            if tcfg.eval_every and done % tcfg.eval_every == 0 and done < tcfg.num_steps:
                result = _evaluate_now(config, setup, state, frozen)
                writer.write(done, result, kind="eval")
                if jax.process_index() == 0:
                    tqdm.write(f"step {done}: {_short(result)}")
            if stop:
                preempt.requested = True
                integrity.finish_saves(mngr, workdir, done)
                log(f"SIGTERM: saved step {done} in {workdir}; stopping")
                break
    bar.close()
    if pending is not None:
        done_step, host = fetch(pending)
        history.append((done_step, host["loss"]))
        writer.write(done_step, host)
    integrity.finish_saves(mngr, workdir, last_good)
    summary = {"start_step": start, "end_step": int(state["step"]), "losses": history}
    if start >= tcfg.num_steps:
        log(f"Nothing to train: the checkpoint is at step {start} and train.num_steps="
            f"{tcfg.num_steps}; raise --config.train.num_steps to continue")
    elif int(state["step"]) >= tcfg.num_steps and not preempt.requested:
        first, last = history[0], history[-1]
        log(f"loss {first[1]:.4f} (step {first[0]}) -> {last[1]:.4f} (step {last[0]})")
        summary.update(_after_training(config, workdir, setup, state, frozen, writer, log))
    writer.close()
    return summary


def _model_params(state, frozen, *, use_ema=True):
    """All parameters of ``state`` (its EMA when kept and ``use_ema``), frozen ones added."""
    trainable = state["ema"] if use_ema and state["ema"] is not None else state["params"]
    return combine(trainable, frozen) if frozen else trainable


def _evaluate_now(config, setup, state, frozen):
    from mdlm_jax import evaluate

    return evaluate.evaluate(setup.apply, _model_params(state, frozen), config, setup.mesh)


def _short(result) -> str:
    return (f"eval {result['nats_per_token']:.4f} nats/token, "
            f"{result['bits_per_token']:.4f} bits/token")


def _invariance(config, workdir, setup, state, frozen, when, writer, log):
    """The mask-invariance probe of ``diffusion.invariance`` before / after training."""
    import itertools
    import json
    import os

    from mdlm_jax.diffusion import invariance

    if jax.process_count() > 1:
        log("invariance report: single-process only; skipped")
        return None
    params = _model_params(state, frozen, use_ema=when == "after")
    it = pipeline.make_eval_iterator(config.data, global_batch_size=config.eval.batch_size)
    batches = list(itertools.islice(it, config.eval.num_batches))
    report = invariance.invariance_report(setup.apply, params, batches, config,
                                          config.loss.mask_agnostic.probe_mask_counts)
    path = os.path.join(workdir, "invariance_before.json")
    if when == "before":
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
        log(f"invariance before training: mean TV {report['tv_mean']:.4f}, CE spread "
            f"{report['ce_spread']:.4f} over extra-mask counts "
            f"{tuple(config.loss.mask_agnostic.probe_mask_counts)}")
    else:
        with open(os.path.join(workdir, "invariance_after.json"), "w") as f:
            json.dump(report, f, indent=2)
        if os.path.exists(path):
            with open(path) as f:
                before = json.load(f)
            log("invariance (extra masks appended after the answer; before -> after):\n"
                + invariance.format_comparison(before, report))
    writer.write(int(state["step"]), report, kind=f"invariance_{when}")
    return report


def _after_training(config, workdir, setup, state, frozen, writer, log):
    from mdlm_jax import evaluate

    out = {}
    result = _evaluate_now(config, setup, state, frozen)
    writer.write(int(state["step"]), result, kind="eval")
    log(evaluate.format_result(result, config))
    out["eval"] = result
    if config.loss.terms.get("mask_agnostic", 0):
        out["invariance"] = _invariance(config, workdir, setup, state, frozen, "after",
                                        writer, log)
    if config.train.sample_at_end and "nelbo" in config.loss.terms:
        from mdlm_jax import sample

        out["samples"] = sample.sample_all_strategies(setup.apply, _model_params(state, frozen),
                                                      config, mesh=setup.mesh)
    return out
