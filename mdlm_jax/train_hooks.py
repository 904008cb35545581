"""What runs around the train step: checkpointing, logging, evaluations, samples.

The loop (``train._loop``) steps the optimizer and calls, in order, every hook of
:func:`hooks_from_config`:

    before_training(run)            once, before the first step of this process
    on_metrics(run, step, metrics)  when a step's metrics reach the host (one step late)
    after_step(run, step)           when ``hook.due(run, step)``: ``every`` steps by default
    after_loop(run)                 once the loop stops (finished or preempted)
    at_end(run) -> dict             once, when the run reached ``train.num_steps``
    at_exit(run)                    last, once the metrics file is closed (always)

A loss term asks for evaluations by name (``losses.Term.evaluations``); they are looked up
in :data:`EVALUATIONS`, so a new term and its evaluation need no edit of the loop.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections.abc import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from mdlm_jax import monitoring
from mdlm_jax.checkpoint import integrity
from mdlm_jax.data import pipeline
from mdlm_jax.diffusion import losses
from mdlm_jax.param_trees import combine


class NonFiniteLossError(FloatingPointError):
    pass


@dataclasses.dataclass
class TrainRun:
    """The state of one training run, as the loop and its hooks see it."""

    config: object
    workdir: str
    plan: object  # train_state.TrainPlan
    mngr: object  # the orbax CheckpointManager
    state: dict
    frozen: dict | None
    data_it: object
    base_key: object
    writer: monitoring.MetricsWriter
    log: Callable
    start: int
    batch: dict | None = None  # the last global batch
    pending: tuple | None = None  # (step, device metrics) not yet read
    history: list = dataclasses.field(default_factory=list)  # (step, loss)
    last_saved: int | None = None  # the newest checkpoint of a finite state
    last_finite: int = 0  # the newest step whose state is known finite
    preempted: bool = False

    def model_params(self, *, use_ema: bool = True):
        """All parameters (the EMA when kept and ``use_ema``), frozen ones added."""
        state = self.state
        trainable = state["ema"] if use_ema and state["ema"] is not None else state["params"]
        return combine(trainable, self.frozen) if self.frozen else trainable

    def host_metrics(self) -> tuple[int, dict]:
        """``(step, metrics)`` of the pending step, read to the host; a non-finite loss
        stops the run. The pending metrics stay pending."""
        step, metrics = self.pending
        host = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not np.isfinite(host["loss"]):  # the loss at `step` is that of state step - 1
            raise self.diverged(f"loss is {host['loss']} at step {step}")
        self.last_finite = max(self.last_finite, step - 1)
        return step, host

    def diverged(self, what: str) -> NonFiniteLossError:
        every = self.config.checkpoint.every_steps
        if self.last_saved is not None:
            kept = (f"The newest checkpoint with a finite state, step {self.last_saved} in "
                    f"{self.workdir}, is kept")
            again = "resume"
        else:
            kept = f"No checkpoint of this run was written (checkpoint.every_steps={every})"
            again = "start again"
        return NonFiniteLossError(
            f"{what}; stopping without saving it. The state was last finite at step "
            f"{self.last_finite}. {kept}; lower optimizer.learning_rate or raise "
            f"optimizer.warmup_steps and {again}")


class Hook:
    """Does nothing; subclasses override what they need. ``every`` = 0: never periodic."""

    every: int = 0

    def due(self, run: TrainRun, step: int) -> bool:
        """Periodic steps before the last one (the last belongs to ``at_end``)."""
        return bool(self.every) and step % self.every == 0 and \
            step < run.config.train.num_steps

    def before_training(self, run: TrainRun) -> None:
        pass

    def on_metrics(self, run: TrainRun, step: int, metrics: dict, *, last: bool) -> None:
        pass

    def after_step(self, run: TrainRun, step: int) -> None:
        pass

    def after_loop(self, run: TrainRun) -> None:
        pass

    def at_end(self, run: TrainRun) -> dict:
        return {}

    def at_exit(self, run: TrainRun) -> None:
        pass


class Checkpointing(Hook):
    """Saves every ``checkpoint.every_steps``, at the last step and when stopping, but
    only a state whose floats and own loss are finite."""

    def __init__(self, config):
        self.every = config.checkpoint.every_steps
        self._check = None

    def due(self, run, step):
        return step % self.every == 0 or run.preempted or step == run.config.train.num_steps

    def after_step(self, run, step):
        run.host_metrics()  # the loss of the previous state must be finite
        if self._check is None:
            self._check = _state_check_fn(run.plan, run.config)
        loss, finite = jax.device_get(self._check(run.state, run.batch, run.frozen,
                                                  run.base_key))
        if not (finite and np.isfinite(loss)):  # never save a diverged state
            raise run.diverged(f"the state at step {step} holds non-finite numbers or gives "
                               f"a non-finite loss ({float(loss)})")
        run.last_finite = step
        integrity.save(run.mngr, run.workdir, step, ocp.args.Composite(
            state=ocp.args.StandardSave(run.state), data=grain_save(run.data_it)))
        run.last_saved = step

    def after_loop(self, run):
        integrity.finish_saves(run.mngr, run.workdir, run.last_saved)
        if run.preempted:
            run.log(f"SIGTERM: saved step {run.last_saved} in {run.workdir}; stopping")


class MetricsLogging(Hook):
    """Every ``train.log_every`` steps (and the first): loss and throughput to
    ``metrics.jsonl``, TensorBoard and the progress bar; the loss change at the end."""

    def __init__(self, config, plan, bar):
        self.every = config.train.log_every
        self.bar = bar
        self.plan = plan
        self.tokens_per_step = (config.data.global_batch_size
                                * config.optimizer.grad_accum_steps * config.data.seq_len)
        self.flops_per_token = monitoring.flops_per_token(
            config.model, plan.n_params, config.data.seq_len,
            forward_passes=losses.forward_passes(config),
            n_frozen=plan.n_params - plan.n_trainable)
        self.peak = monitoring.peak_flops_per_device(
            override=config.train.peak_flops_per_device)
        self._t_last, self._steps_since = time.perf_counter(), 0

    def due(self, run, step):
        return False  # works on metrics, as they arrive

    def on_metrics(self, run, step, metrics, *, last):
        if last:
            run.writer.write(step, metrics)
            return
        self._steps_since += 1
        if step % self.every != 0 and step != run.start + 1:
            return
        now = time.perf_counter()
        dt = (now - self._t_last) / max(self._steps_since, 1)
        tps = self.tokens_per_step / dt
        metrics.update(tokens_per_s=tps, step_time_s=dt,
                       learning_rate=float(self.plan.schedule(step)))
        if self.peak:
            metrics["mfu"] = self.flops_per_token * tps / (self.peak * jax.device_count())
        run.writer.write(step, metrics)
        self._t_last, self._steps_since = now, 0
        self.bar.set_postfix(loss=f"{metrics['loss']:.3f}", tok_s=f"{tps:,.0f}",
                             mfu=f"{metrics['mfu']:.1%}" if self.peak else "n/a")

    def after_loop(self, run):
        self.bar.close()

    def at_end(self, run):
        first, last = run.history[0], run.history[-1]
        run.log(f"loss {first[1]:.4f} (step {first[0]}) -> {last[1]:.4f} (step {last[0]})")
        return {}


class Evaluation(Hook):
    """The ``eval`` command's NELBO (or AR NLL) every ``train.eval_every`` steps and at the
    end (``train.eval_at_end``)."""

    def __init__(self, config):
        self.every = config.train.eval_every
        self.final = config.train.eval_at_end

    def _evaluate(self, run):
        from mdlm_jax import evaluate

        result = evaluate.evaluate(run.plan.apply, run.model_params(), run.config,
                                   run.plan.mesh)
        run.writer.write(int(run.state["step"]), result, kind="eval")
        return result

    def after_step(self, run, step):
        result = self._evaluate(run)
        if jax.process_index() == 0:
            tqdm.write(f"step {step}: eval {result['nats_per_token']:.4f} nats/token, "
                       f"{result['bits_per_token']:.4f} bits/token, "
                       f"{result['bits_per_character']:.4f} bits/character")

    def at_end(self, run):
        if not self.final:
            return {}
        from mdlm_jax import evaluate

        result = self._evaluate(run)
        run.log(evaluate.format_result(result, run.config))
        return {"eval": result}


class InvarianceReport(Hook):
    """``diffusion.invariance`` before (a run from step 0) and after training: written to
    ``invariance_before.json`` / ``invariance_after.json`` and the metrics file."""

    def __init__(self, config):
        del config

    def before_training(self, run):
        if int(run.state["step"]) == 0:
            _invariance(run, "before")

    def at_end(self, run):
        return {"invariance": _invariance(run, "after")}


class Samples(Hook):
    """One sample per strategy at the end of training (``train.sample_at_end``)."""

    def __init__(self, config):
        self.final = config.train.sample_at_end

    def at_end(self, run):
        if not self.final:
            return {}
        from mdlm_jax import sample

        return {"samples": sample.sample_all_strategies(run.plan.apply, run.model_params(),
                                                        run.config, mesh=run.plan.mesh)}


class MaskSensitivity(Hook):
    """PAPER.md experiment 10 at the end of training (``context.eval_at_end``): the
    context suite's mask-sensitivity evaluation on the run's own model."""

    def __init__(self, config):
        self.final = config.context.eval_at_end

    def at_end(self, run):
        if not self.final:
            return {}
        from mdlm_jax.context import harness

        return {"context": harness.evaluate_in_training(
            run.config, run.workdir, run.plan.apply, run.model_params(),
            int(run.state["step"]), mesh=run.plan.mesh)}


class RunOutputs(Hook):
    """Where to look once training stops: the loss curve PNG (redrawn from
    ``metrics.jsonl``) and the TensorBoard folder (process 0)."""

    def at_exit(self, run):
        if jax.process_index() != 0:
            return
        try:
            from mdlm_jax import plotting

            png = plotting.save_loss_curve(run.workdir)
        except ImportError as e:
            run.log(f"loss curve not drawn: {e} (pip install matplotlib)")
        else:
            if png:
                run.log(f"loss curve: {png}")
        tb = os.path.join(run.workdir, "tensorboard")
        run.log(f"TensorBoard logs: {tb} (view: pip install tensorboard; tensorboard "
                f"--logdir {tb})")


# Evaluations a loss term may ask for by name (``losses.Term.evaluations``).
EVALUATIONS: dict[str, Callable[[object], Hook]] = {
    "invariance": InvarianceReport,
    "samples": Samples,
}


def hooks_from_config(config, plan, bar) -> list[Hook]:
    """Checkpointing, logging, evaluation, the evaluations the loss terms want, the
    context suite's mask sensitivity, then the pointers to the run's outputs."""
    hooks = [Checkpointing(config), MetricsLogging(config, plan, bar), Evaluation(config)]
    for name in losses.evaluations(config):
        if name not in EVALUATIONS:
            raise ValueError(f"a loss term asks for the evaluation {name!r}, which is not one "
                             f"of {sorted(EVALUATIONS)}; register it in "
                             "train_hooks.EVALUATIONS")
        hooks.append(EVALUATIONS[name](config))
    hooks.append(MaskSensitivity(config))
    hooks.append(RunOutputs())
    return hooks


def _invariance(run, when):
    from mdlm_jax.diffusion import invariance

    config, log = run.config, run.log
    if jax.process_count() > 1:
        log("invariance report: single-process only; skipped")
        return None
    params = run.model_params(use_ema=when == "after")
    it = pipeline.make_eval_iterator(config.data, global_batch_size=config.eval.batch_size)
    batches = list(itertools.islice(it, config.eval.num_batches))
    counts = config.loss.mask_agnostic.probe_mask_counts
    report = invariance.invariance_report(run.plan.apply, params, batches, config, counts)
    path = os.path.join(run.workdir, "invariance_before.json")
    if when == "before":
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
        log(f"invariance before training: mean TV {report['tv_mean']:.4f}, CE spread "
            f"{report['ce_spread']:.4f} over extra-mask counts {tuple(counts)}")
    else:
        with open(os.path.join(run.workdir, "invariance_after.json"), "w") as f:
            json.dump(report, f, indent=2)
        if os.path.exists(path):
            with open(path) as f:
                before = json.load(f)
            log("invariance (extra masks appended after the answer; before -> after):\n"
                + invariance.format_comparison(before, report))
    run.writer.write(int(run.state["step"]), report, kind=f"invariance_{when}")
    return report


def _state_check_fn(plan, config):
    """``(loss, all_finite)`` of a state: its own loss on the first micro-batch of
    ``batch`` and whether every float in it (params, optimizer state, EMA) is finite."""
    import jax.numpy as jnp

    def check(state, batch, frozen, base_key):
        step = state["step"]
        params = combine(state["params"], frozen) if frozen else state["params"]
        micro = dict(jax.tree.map(lambda x: x[0], batch), step=step)
        loss, _ = losses.total_loss(plan.apply, params, micro,
                                    jax.random.fold_in(base_key, step), config)
        floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        return loss, jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats]))

    frozen_sh = plan.frozen_shardings if plan.frozen_shapes else None
    return jax.jit(check, in_shardings=(plan.state_shardings, plan.batch_sharding,
                                        frozen_sh, None))


def grain_save(data_it):
    import grain

    return grain.checkpoint.CheckpointSave(data_it)
