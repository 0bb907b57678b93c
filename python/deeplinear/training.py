"""The training entry point: ``dl.train(net, problem, optimizer, steps)``.

One loop trains every kind of model.  What a kind must provide to be trained (the model-kind
protocol; see ``_WideModel`` and ``_CompressedModel`` below, and DESIGN comments there):

* **core trainer** -- ``trainer(problem, optimizer, record_every, tol, steps)`` builds the
  compiled ``_core.Trainer64/32`` over the network whose weights the core steps
  (``core_network``: the wide network, or a compressed network's blocks), with the objective
  the kind sees (the problem's data; or the wide problem through fixed outer factors, the wide
  c handed to the core) and any state of its own that advances with every step (a compressed
  network's bulk value ρ(t), ``Trainer.set_bulk``).
* **checkpointed state** -- weights of ``core_network``, optimizer buffers and history are
  stored for every kind; ``state(trainer)`` adds the kind's own arrays (ρ and heavy ball's trace
  of it: of a compressed network, or of a wide one tracked "structured") and
  ``restore(trainer, checkpoint)`` writes everything back, so a resumed run is
  bit-identical to an uninterrupted one.
* **callback** -- ``view(trainer)`` is what ``callback(step, net)`` receives, brought up to date
  (the compressed network itself, its ρ current, so ``lift()`` works there).
* **tracking** -- ``set_tracking(...)`` installs the core tracker: for a wide network the
  requested mode against a reference basis; for a compressed network the exact wide singular
  values from the blocks' SVDs plus ``d − 2r`` copies of |ρ|, angles against its own basis.
* **checks** -- ``check(problem, optimizer, tracking)`` refuses what cannot apply, before any
  work; ``describe()`` is the kind's part of a checkpoint's fingerprint; ``finish`` writes the
  trained state back (ρ, step counts) and ``meta`` adds to ``Result.meta``.

A new kind (e.g. a sparse compressed completion model with trained outer factors) implements
these members and is returned by ``_model_for``; ``train`` itself does not change.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
import warnings
import weakref
from typing import Callable

import numpy as np

from . import _validation as V
from ._config import _one_blas_thread
from ._io import check_writable
from ._loader import _core
from .network import DeepLinearNetwork
from .optim import Optimizer
from .problems import Completion, Problem
from .result import Result
from .tracking import Tracking

_CORE_TRAINER = {np.dtype(np.float64): _core.Trainer64, np.dtype(np.float32): _core.Trainer32}
_CORE_GRADS = {np.dtype(np.float64): _core.loss_and_gradients64,
               np.dtype(np.float32): _core.loss_and_gradients32}

# Steps run inside C++ per call, sized so that one call lasts about this long: the progress
# bar, callbacks and Ctrl-C are served between calls.
_CHUNK_SECONDS = 0.2


class DivergenceWarning(RuntimeWarning):
    """A training run stopped because its loss or weights became non-finite."""


class DivergenceError(FloatingPointError):
    """Raised instead of :class:`DivergenceWarning` with ``on_divergence="raise"``."""


def _check_pair(net: DeepLinearNetwork, problem: Problem) -> None:
    if not isinstance(net, DeepLinearNetwork):
        raise TypeError(f"net: must be a DeepLinearNetwork, got {type(net).__name__}")
    if not isinstance(problem, Problem):
        raise TypeError(f"problem: must be a Factorization, Completion, Regression or Classification, got {type(problem).__name__}")
    d_out, d_in = problem.shape
    if (d_out, d_in) != (net.dims[-1], net.dims[0]):
        raise ValueError(
            f"problem: expects an end-to-end matrix of shape {(d_out, d_in)}, the network gives "
            f"{(net.dims[-1], net.dims[0])}")


def loss_and_gradients(net: DeepLinearNetwork, problem: Problem, weight_decay: float = 0.0):
    """Loss and gradients of every layer at the network's current weights.

    Returns ``(train_loss, test_loss, [∇W_1, …, ∇W_L])``; ``test_loss`` is NaN except for
    completion.  Same code path as a training step (prefix products + one backward sweep).
    """
    _check_pair(net, problem)
    weight_decay = V.real(weight_decay, "weight_decay", low=0.0)
    a, b = problem._core_args(net.dtype)
    train, test, grads = _CORE_GRADS[net.dtype](net._net, problem.kind, a, b, problem.c,
                                                weight_decay)
    return train, test, grads


def train(net, problem: Problem, optimizer: Optimizer, steps: int, *,
          tol: float | None = None, record_every: int = 1, progress: bool = True,
          callback: Callable[[int, object], None] | None = None, callback_every: int | None = None,
          on_divergence: str = "warn", track: "str | Tracking | None" = None,
          checkpoint: "str | os.PathLike | None" = None, checkpoint_every: int | None = None) -> Result:
    """Train ``net`` in place on ``problem`` with ``optimizer`` for at most ``steps`` steps.

    Parameters
    ----------
    net : DeepLinearNetwork, CompressedNetwork or CompressedCompletion
        Updated in place.  A :class:`~deeplinear.CompressedNetwork` trains its ``2r × 2r``
        blocks and its bulk value ρ (MATH.md §3) on the problem it was compressed for; every
        option below works for it as for a wide network.  A
        :class:`~deeplinear.CompressedCompletion` trains its factors on the observed entries of
        a :class:`~deeplinear.Completion` (MATH.md §4); every option but ``track`` applies.
    problem : Factorization, Completion, Regression or Classification
    optimizer : GD, Adam or RMSProp
        A fresh optimizer state is created for this call.
    steps : int
        Step budget (>= 0).
    tol : float, optional
        Stop with status ``"converged"`` as soon as the training loss is ``<= tol``.
    record_every : int
        Record the losses every this many steps (and always at the last step).
    progress : bool
        Show a progress bar (tqdm, on stderr) for runs longer than half a second.
    callback : callable, optional
        ``callback(step, net)`` called at step 0, every ``callback_every`` steps and at the end;
        the network it sees holds the weights after ``step`` steps (a compressed network: its
        blocks and ρ, so ``net.lift()`` is the wide network at that step).
    callback_every : int, optional
        Only with ``callback``.
    on_divergence : {"warn", "raise"}
        A non-finite loss or non-finite weights stop the run with status ``"diverged"``
        (history up to there kept) and a :class:`DivergenceWarning`, or raise
        :class:`DivergenceError`.
    track : {None, "full", "incremental", "structured"} or Tracking
        Record singular values and learning-subspace angles of every layer (see
        :class:`deeplinear.Tracking`; a string is ``Tracking(string)``).  Results in
        ``res.tracking``.
    checkpoint : str or path, optional
        Write a checkpoint (weights, optimizer state, history, a compressed network's ρ and
        heavy ball's trace of it, and with ``track`` the tracker's complete state) to this file
        every ``checkpoint_every`` steps (default ``steps // 100``) and at the end, atomically
        (write, then rename).  When the file exists, the same call resumes from it
        (bit-identical to an uninterrupted run, also after SIGKILL); a checkpoint of another
        run is refused with a ``ValueError``.
    checkpoint_every : int, optional
        Only with ``checkpoint``.

    Returns
    -------
    Result
        ``train_loss[i]`` is the loss after ``steps[i]`` steps (with ``record_every=1``,
        ``len(train_loss) == steps + 1`` and index k is the loss after k steps).

    Notes
    -----
    Steps run inside the compiled core with the GIL released, in chunks of about 0.2 s; the
    progress bar, the callback and Ctrl-C are served between chunks.  A KeyboardInterrupt
    stops the run after the current chunk with status ``"interrupted"`` and the partial history.
    Every keyword is validated whether or not it is used; an option given without the option it
    belongs to (``callback_every`` without ``callback``, ``checkpoint_every`` without
    ``checkpoint``) is refused.
    A network is trained by one call at a time: a second call on it while it trains (another
    thread, or its own callback) raises ``ValueError``.
    Short calls in a loop are cheap: the next call on the same network and problem reuses this
    call's workspace, and its first loss is this call's last one while the weights are
    unchanged (no second forward pass); the results are those of a fresh call.  The network
    trained last keeps that workspace (and a reference to the problem) between calls.
    """
    args = dict(locals())
    # the model that holds the weights guards them (a compressed network: its blocks)
    guard = net if hasattr(net, "_training") else getattr(net, "blocks", None)
    with guard._training() if hasattr(guard, "_training") else contextlib.nullcontext():
        return _train(**args)


# Set by code for which a run is a part of a larger job (an experiment, a sweep's run): a Ctrl-C
# then stops the job, not only this call (after the call has saved its checkpoint and partial
# state, as always), instead of returning a partial result the job would take for a whole one.
_INTERRUPT_RAISES = contextvars.ContextVar("deeplinear_interrupt_raises", default=False)


@contextlib.contextmanager
def interrupts_raise():
    """Within it, a :func:`train` call that a KeyboardInterrupt stops re-raises it once its
    checkpoint (if any) is written, instead of returning the partial result with status
    ``"interrupted"``."""
    token = _INTERRUPT_RAISES.set(True)
    try:
        yield
    finally:
        _INTERRUPT_RAISES.reset(token)


def _train(net, problem, optimizer, steps, *, tol, record_every, progress, callback, callback_every,
           on_divergence, track, checkpoint, checkpoint_every) -> Result:
    """:func:`train`, once the network is marked as being trained."""
    model = _model_for(net)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: must be dl.GD, dl.Adam or dl.RMSProp, got {type(optimizer).__name__}")
    steps = V.integer(steps, "steps", low=0)
    tol = V.real(tol, "tol", low=0.0, allow_none=True)
    record_every = V.integer(record_every, "record_every", low=1)
    progress = V.boolean(progress, "progress")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: must be callable, got {type(callback).__name__}")
    callback_every = V.integer(callback_every, "callback_every", low=1, allow_none=True)
    if callback_every is not None and callback is None:
        raise ValueError("callback_every: given without callback")
    on_divergence = V.choice(on_divergence, "on_divergence", ("warn", "raise"))
    tracking = Tracking.of(track)
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, bytes, os.PathLike)):
            raise TypeError(f"checkpoint: must be a path, got {type(checkpoint).__name__}")
        checkpoint = check_writable(checkpoint, "checkpoint")
    checkpoint_every = V.integer(checkpoint_every, "checkpoint_every", low=1, allow_none=True)
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError("checkpoint_every: given without checkpoint")
    if checkpoint is not None and checkpoint_every is None:
        checkpoint_every = max(1, steps // 100)
    model.check(problem, optimizer, tracking)

    elapsed_before = 0.0
    fp = None
    state = None
    track_settings = None if tracking is None else tracking.settings()
    if checkpoint is not None:
        from . import checkpoint as ckpt

        fp = ckpt.fingerprint(model.describe(), problem, optimizer, record_every, tol, track_settings,
                              model.start())
        if os.path.exists(checkpoint):
            state = ckpt.load(checkpoint, fp)
            if state["step"] > steps:
                raise ValueError(f"steps: the checkpoint is at step {state['step']}, beyond steps={steps}")
    basis = None
    if tracking is not None and state is None:
        # Before the trainer exists: creating it hands the network to the core, after which the
        # initial weights the basis comes from would have to be regenerated from the seed.
        basis = model.reference_basis(problem, tracking)
    trainer = model.trainer(problem, optimizer, record_every, tol, steps)
    tracker_from = None  # what the tracker is built from (stored in checkpoints)
    if tracking is not None:
        # Resumed: the tracker is rebuilt from the bases and ρ(0) of the original call (stored),
        # not from the network's weights now, then its state is written back.
        tracker_from = model.set_tracking(trainer, problem, optimizer, steps, tracking, basis,
                                          None if state is None else state["tracking"])
    if state is not None:
        model.restore(trainer, state)
        if tracking is not None:
            trainer.restore_tracking(state["tracking"]["state"])
        elapsed_before = state["elapsed"]

    def save():
        ckpt.save(checkpoint, model.core_network, trainer, fp, elapsed_before + time.perf_counter() - start,
                  tracker_from, model.state(trainer))

    bar = _progress_bar(steps, progress)
    if bar is not None and trainer.step:
        bar.update(trainer.step)
    status = "running"
    start = time.perf_counter()
    chunk = 1
    last_callback = -1  # step of the last callback call: none twice for the same step
    try:
        if callback is not None:
            callback(trainer.step, model.view(trainer))
            last_callback = trainer.step
        while trainer.step < steps:
            n = min(chunk, steps - trainer.step)
            if callback is not None and callback_every is not None:
                n = min(n, callback_every - trainer.step % callback_every)
            if checkpoint_every is not None:
                n = min(n, checkpoint_every - trainer.step % checkpoint_every)
            t0 = time.perf_counter()
            before = trainer.step
            status = trainer.run(n)
            dt = time.perf_counter() - t0
            done = trainer.step - before
            if bar is not None:
                bar.update(done)
                bar.set_postfix(loss=f"{trainer.last_loss:.3e}", refresh=False)
            if status != "running":
                break
            if callback is not None and callback_every is not None and trainer.step % callback_every == 0:
                callback(trainer.step, model.view(trainer))
                last_callback = trainer.step
            if checkpoint is not None and trainer.step % checkpoint_every == 0:
                save()
            # grow or shrink the chunk towards _CHUNK_SECONDS of work
            per_step = dt / max(done, 1)
            chunk = int(max(1, min(chunk * 4, _CHUNK_SECONDS / max(per_step, 1e-9))))
        status = trainer.finish()
        if checkpoint is not None and status in ("running", "converged"):
            save()
    except KeyboardInterrupt:
        status = "interrupted"
        # The checkpoint first, as at a chunk boundary: the record finish() adds at the step
        # reached (off the record_every / tracking grid) belongs to this partial result only, a
        # resumed run records what an uninterrupted one does.
        if checkpoint is not None and trainer.status in ("running", "converged"):
            save()
        # the loss at the step reached, so the history ends at the network's weights
        if trainer.status == "running" and trainer.finish() == "diverged":
            status = "diverged"
    finally:
        if bar is not None:
            bar.close()
        model.finish(trainer, optimizer, problem)
    if status == "interrupted" and _INTERRUPT_RAISES.get():
        raise KeyboardInterrupt
    elapsed = elapsed_before + time.perf_counter() - start
    if status == "running":
        status = "max_steps"
    if callback is not None and status in ("max_steps", "converged") and trainer.step != last_callback:
        try:
            callback(trainer.step, model.view(trainer))
        except KeyboardInterrupt:  # Ctrl-C in the final callback: the run itself is complete
            if _INTERRUPT_RAISES.get():
                raise
            status = "interrupted"

    h = trainer.history()
    t = trainer.tracking(model.core_network.depth) if tracking is not None else None
    result = Result(
        steps=np.asarray(h["steps"], dtype=np.int64),
        train_loss=np.asarray(h["train_loss"], dtype=np.float64),
        test_loss=np.asarray(h["test_loss"], dtype=np.float64) if problem.has_test_loss else None,
        status=status, n_steps=int(trainer.step), elapsed=elapsed,
        tracking=None if t is None else {"mode": tracking.mode, **t},
        test_rmse=problem.test_rmse(h["test_loss"]) if isinstance(problem, Completion) else None,
        meta={"network": model.core_network.describe(), "problem": problem.describe(),
              "optimizer": optimizer.describe(), "steps": steps, "tol": tol,
              "record_every": record_every, "version": _core.__version__, **model.meta(trainer)})
    if hasattr(problem, "accuracy") and status != "diverged":  # classification
        result.train_accuracy, result.test_accuracy = problem.accuracy(net)
    if status == "diverged":
        msg = (f"training diverged at step {trainer.step} (non-finite loss or weights); "
               f"the history up to there is kept, try a smaller lr")
        if on_divergence == "raise":
            raise DivergenceError(msg)
        warnings.warn(msg, DivergenceWarning, stacklevel=3)
    return result


# -- model kinds ----------------------------------------------------------------------------------
#
# DESIGN: train() has one loop; what differs between kinds of model lies in a small object made
# by _model_for(net), with these members (see the module docstring):
#
#   core_network            the DeepLinearNetwork whose weights the core trainer steps (and a
#                           checkpoint stores as w0, w1, ...)
#   check(problem, optimizer, tracking)   refuse what cannot apply (before any work)
#   describe()              the model's part of a checkpoint's fingerprint (plain data)
#   start()                 what identifies the run's initial weights in that fingerprint
#   reference_basis(problem, tracking)    the tracking reference computed before the trainer
#                           exists (or None)
#   trainer(problem, optimizer, record_every, tol, steps)   the core trainer, its objective and
#                           any state of the model's own that advances with every step
#   set_tracking(trainer, problem, optimizer, steps, tracking, basis, resume) -> built_from
#                           the tracker: what tracking means for the kind; returns what it was
#                           built from (stored in checkpoints, for the resumed run)
#   state(trainer) -> dict  the model's own state beyond weights, optimizer and history (arrays,
#                           stored in checkpoints as model_<key>); restore(trainer, checkpoint)
#                           writes back weights, optimizer state, history and that state
#   view(trainer)           what the callback receives, brought up to date
#   finish(trainer, optimizer, problem)   write the trained state back into the user's object
#   meta(trainer) -> dict   extra entries of Result.meta


def _model_for(net):
    from .completion import CompressedCompletion, _CompletionModel
    from .compression import CompressedNetwork

    if isinstance(net, DeepLinearNetwork):
        return _WideModel(net)
    if isinstance(net, CompressedNetwork):
        return _CompressedModel(net)
    if isinstance(net, CompressedCompletion):
        return _CompletionModel(net)
    raise TypeError(f"net: must be a DeepLinearNetwork, CompressedNetwork or CompressedCompletion, "
                    f"got {type(net).__name__}")


class _WideModel:
    """A DeepLinearNetwork: its own weights against the problem's data."""

    def __init__(self, net: DeepLinearNetwork) -> None:
        self.core_network = net
        # before the trainer takes the network for writing: whether it is at its initial
        # weights, and the write count that what its previous call left still refers to
        self.at_init = net._at_init()
        self.writes = net._writes
        self.tracking = None  # what set_tracking built, for finish (_TrackingCarry)

    def check(self, problem, optimizer, tracking) -> None:
        _check_pair(self.core_network, problem)
        _check_memory(self.core_network, problem, optimizer)

    def describe(self) -> dict:
        net = self.core_network
        out = {"dims": list(net.dims), "dtype": str(net.dtype)}
        if net.activation is not None:  # linear networks keep the fingerprint they always had
            out["activation"] = net.activation
        return out

    def start(self) -> dict:
        from .checkpoint import start_identity

        return start_identity(self.core_network)

    def reference_basis(self, problem, tracking):
        return _default_basis(self.core_network, problem, tracking.mode, tracking.basis)

    def trainer(self, problem, optimizer, record_every, tol, steps):
        # DESIGN: the next call on the same network and problem reuses this call's core trainer
        # (Trainer.reset: a fresh run, the same as a new trainer's), so it allocates no
        # workspace and its first loss is this call's last one, not another forward pass (the
        # engine checks that the weights are unchanged: any write to them, set_weight or a
        # step of another trainer, forces the pass).  Research code steps in Python loops.
        # The network keeps the trainer (its workspace, the problem) as net._trainer_cache, and
        # one network at a time in the process does: training another drops it (the memory
        # kept between calls is one trainer's, not one per network trained).
        net = self.core_network
        tol = -1.0 if tol is None else tol
        core = net._writable_core()
        cached = getattr(net, "_trainer_cache", None)
        if cached is not None and cached[0] is problem and cached[1] is core:
            trainer = cached[2]
            trainer.reset(optimizer._config(), record_every, tol, steps, 0.0)
            return trainer
        _keep_trainer(None)  # the old workspace goes before the new one is allocated
        a, b = problem._core_args(net.dtype)
        trainer = _CORE_TRAINER[net.dtype](core, problem.kind, a, b, problem.c, optimizer._config(),
                                           record_every, tol, steps)
        _keep_trainer(net, (problem, core, trainer))
        return trainer

    def set_tracking(self, trainer, problem, optimizer, steps, tracking, basis, resume):
        net = self.core_network
        carry = getattr(net, "_tracking_carry", None)
        if carry is not None and (resume is not None or carry.writes != self.writes
                                  or not carry.applies(tracking, basis)):
            carry = None  # the weights changed since, other settings (or a checkpoint's state rules)
        built = _setup_tracking(trainer, net, problem, optimizer, steps, tracking, basis, resume=resume,
                                at_init=self.at_init, carry=carry)
        self.tracking = (tracking, basis)
        return built

    def state(self, trainer) -> dict:
        # the bulk value: "structured" tracking's ρ(t), advanced by the trainer
        return {"bulk": np.array(trainer.bulk_state())} if trainer.has_bulk else {}

    def restore(self, trainer, state) -> None:
        net = self.core_network
        core = net._writable_core()
        for i, w in enumerate(state["weights"]):
            core.set_weight(i, np.ascontiguousarray(w, dtype=net.dtype))
        trainer.restore(state["step"], state["count"], state["trace"], state["first"], state["second"],
                        state["steps"], state["train"], state["test"])
        if trainer.has_bulk:
            if "bulk" not in state["model"]:
                raise ValueError("checkpoint: lacks the bulk value of the run (rho); delete it or pass another path")
            rho, b = state["model"]["bulk"]
            trainer.restore_bulk(float(rho), float(b))

    def view(self, trainer):
        return self.core_network

    def finish(self, trainer, optimizer, problem) -> None:
        net = self.core_network
        net._tracking_carry = None
        if self.tracking is not None and trainer.status != "diverged":
            net._tracking_carry = _TrackingCarry.of(trainer, net, *self.tracking)

    def meta(self, trainer) -> dict:
        return {}


class _CompressedModel(_WideModel):
    """A CompressedNetwork (MATH.md §3): the core trains its blocks on the wide problem seen
    through the fixed outer factors, with the wide c, and carries ρ(t) and its loss terms (exact
    case: GD / momentum on a factorization); tracking records the wide singular values."""

    def __init__(self, comp) -> None:
        self.comp = comp
        self.core_network = comp.blocks
        self.exact = False
        # steps the network had when this run started: a resumed run's restore sets the run's own
        # (its trainer's step counts from the run's start, restored steps included)
        self.base_steps = int(comp.steps_trained)

    def start(self) -> dict:
        """The blocks' initial weights (ε I) and what fixes the reduced problem: Φ̃ of a
        factorization, else the outer factors U_{L,1}, V_{1,1} (the compressions of two wide
        networks with the same ε differ only there).  A reduced network's Φ̃ is its problem's
        data (in the fingerprint already)."""
        from .checkpoint import digest, start_identity
        from .problems import Factorization

        comp = self.comp
        out = start_identity(self.core_network)
        if comp.basis is not None:
            if isinstance(comp.problem, Factorization):
                if comp._phi_tilde is None:  # as _compressed_problem computes it
                    comp._phi_tilde = np.ascontiguousarray(comp.basis.U[-1].T @ comp.problem.target @ comp.basis.V[0])
                out["compression"] = digest([comp._phi_tilde])
            else:
                out["compression"] = digest([comp.basis.U[-1], comp.basis.V[0]])
        return out

    def state(self, trainer) -> dict:
        return {**super().state(trainer), "steps_before": np.array([self.base_steps], dtype=np.int64)}

    def restore(self, trainer, state) -> None:
        super().restore(trainer, state)
        if "steps_before" in state["model"]:
            self.base_steps = int(np.asarray(state["model"]["steps_before"]).reshape(-1)[0])

    def check(self, problem, optimizer, tracking) -> None:
        from .compression import ApproximationWarning, ReducedFactorization
        from .optim import GD
        from .problems import Completion, Factorization

        comp = self.comp
        if not isinstance(problem, (Factorization, Completion, ReducedFactorization)):
            raise TypeError(f"problem: a compressed network trains on a Factorization or Completion, "
                            f"got {type(problem).__name__}")
        if problem.shape != (comp.width, comp.width):
            raise ValueError(f"problem: shape {problem.shape} does not match the compressed network's width {comp.width}")
        comp._check_problem(problem)
        if tracking is not None:
            if tracking.basis is not None:
                raise ValueError("basis: a compressed network is tracked against its own basis (omit basis=)")
            if tracking.verify_every:
                raise ValueError("verify_every: a compressed network's tracked values are exact; there is "
                                 "no full SVD to verify against")
            for name in ("tol", "max_iter"):
                if getattr(tracking, name) is not None:
                    raise ValueError(f"{name}: a compressed network's tracked values are exact (the blocks' "
                                     "SVDs), there is no iteration to stop")
        self.exact = comp.exact and isinstance(optimizer, GD) and isinstance(problem, (Factorization, ReducedFactorization))
        if comp.exact and not self.exact:
            warnings.warn(f"compressed training is an approximation with {optimizer.name}: only GD and "
                          "momentum keep the invariant structure", ApproximationWarning, stacklevel=4)

    def describe(self) -> dict:
        comp = self.comp
        # not comp.exact: an approximate run (Adam) clears it at its end, also when interrupted,
        # and the same call must resume
        return {"compressed": True, "width": comp.width, "rank2": comp.rank2, "depth": comp.depth,
                "dtype": str(comp.blocks.dtype)}

    def reference_basis(self, problem, tracking):
        return None

    def trainer(self, problem, optimizer, record_every, tol, steps):
        from .compression import _compressed_problem

        comp = self.comp
        kind, a, b, left, right, offset = _compressed_problem(comp, problem, exact=self.exact)
        dt = comp.blocks.dtype
        cast = (lambda x: None if x is None else np.ascontiguousarray(x, dtype=dt))
        trainer = _CORE_TRAINER[dt](comp.blocks._writable_core(), kind, cast(a), cast(b), problem.c,
                                    optimizer._config(), record_every, -1.0 if tol is None else tol, steps,
                                    offset, cast(left), cast(right))
        if self.exact:
            # ρ(t) and its loss terms (c/2)(d−2r)ρ^{2L} + (λ/2)L(d−2r)ρ² advance in the core
            trainer.set_bulk(comp.rho, float(comp.width - comp.rank2))
        return trainer

    def set_tracking(self, trainer, problem, optimizer, steps, tracking, basis, resume):
        comp = self.comp
        k = tracking.k
        if tracking.mode == "incremental" and k is None:
            k = comp.rank2
        trainer.set_tracking(comp.blocks._net, "compressed", tracking.every, 0 if k is None else k,
                             tracking.settings()["tol"], tracking.settings()["max_iter"], 0, [], [],
                             top_only=tracking.mode == "incremental", bulk_count=comp.width - comp.rank2,
                             bulk_rho=comp.rho)
        return {"ref_u": [], "ref_v": [], "rho0": None}


    def view(self, trainer):
        if self.exact:
            self.comp.rho = float(trainer.bulk_rho)
        return self.comp

    def finish(self, trainer, optimizer, problem) -> None:
        comp = self.comp
        if self.exact:
            comp.rho = float(trainer.bulk_rho)
        comp.steps_trained = self.base_steps + int(trainer.step)
        if comp.exact and not self.exact and trainer.step > 0:
            # its blocks left the invariant structure and ρ was not carried: no longer a wide network
            comp.exact = False
            comp.reason = f"trained with {optimizer.name} on a {type(problem).__name__}"

    def meta(self, trainer) -> dict:
        comp = self.comp
        out = {"compressed": True, "exact": self.exact, "width": comp.width, "rank2": comp.rank2}
        if self.exact:
            out["rho"] = comp.rho
        return out


_KEPT_LOCK = threading.Lock()
_kept_by = None  # weak reference to the network whose trainer is kept (at most one)


def _keep_trainer(net, entry=None) -> None:
    """Keep ``entry`` = (problem, core network, trainer) on ``net`` for its next call, dropping
    the one another network kept; ``_keep_trainer(None)`` drops the kept one."""
    global _kept_by
    with _KEPT_LOCK:
        prev = None if _kept_by is None else _kept_by()
        if prev is not None:
            prev._trainer_cache = None
        _kept_by = None
        if net is not None:
            net._trainer_cache = entry
            _kept_by = weakref.ref(net)


def _check_memory(net, problem, optimizer) -> None:
    from . import _memory
    from .optim import Adam, GD, RMSProp

    if isinstance(optimizer, GD):
        buffers = int(optimizer.momentum != 0)
    elif isinstance(optimizer, Adam):
        buffers = 2
    elif isinstance(optimizer, RMSProp):
        buffers = 1 + int(optimizer.centered) + int(optimizer.momentum != 0)
    else:
        buffers = 2
    has_input = problem.kind in ("regression", "classification")
    n_cols = problem.X.shape[1] if has_input else net.dims[0]
    nbytes = _memory.training_bytes(net.dims, n_cols, net.dtype.itemsize, buffers,
                                    has_input or not net.is_linear)
    _memory.require(nbytes, "training (gradients, optimizer state, workspace)", "net")


def _default_basis(net, problem, track: str, basis):
    """The reference basis of tracking: ``basis`` when given, else the invariant basis of a
    factorization with square layers (None where there is none: 2r > d, a non-orthogonal init;
    an error for "structured", which needs it)."""
    from .parsimony import invariant_basis
    from .problems import Factorization

    if basis is not None or len(set(net.dims)) != 1 or not isinstance(problem, Factorization):
        return basis
    if not net.is_linear:
        if track == "structured":
            net._require_linear("track='structured' (the invariant structure of MATH.md §2)")
        return None  # no invariant subspaces: singular values only
    # Reused between calls on the same network and problem: the basis is a function of the
    # initial weights and the problem's data, neither of which can change (a problem owns
    # read-only copies of its data; the initial weights are fixed at construction).
    cached = getattr(net, "_reference_basis", None)
    if cached is not None and cached[0] is problem:
        return cached[1]
    try:
        with _one_blas_thread():  # thin products (d × d times r or 2r columns): see _one_blas_thread
            basis = invariant_basis(net, problem)
    except ValueError:
        if track == "structured":
            raise
        return None
    net._reference_basis = (problem, basis)
    return basis


class _TrackingCarry:
    """What a tracked call on a wide network leaves for the next call on it, valid while its
    weights are unchanged (``writes``: its write count at the end of the call) and the tracking
    settings and reference basis are the same: its last record (of the weights the next call
    starts from: the next call's record of step 0, not computed again), the incremental warm
    starts (Ritz vectors, change sketches and the random stream: the next record starts where
    the last one ended) and the bulk value ρ of a "structured" run (no structure fit of the
    weights to find it)."""

    _WARM = ("inc_u", "inc_v", "inc_sketch", "rng")
    _RECORD = ("singular_values", "angles_right", "angles_left", "angles_align")

    def __init__(self, writes: int, settings: dict, basis, warm: dict, rho: float | None) -> None:
        self.writes, self.settings, self.basis, self.warm, self.rho = writes, settings, basis, warm, rho

    @classmethod
    def of(cls, trainer, net, tracking: Tracking, basis) -> "_TrackingCarry":
        state = trainer.tracking_state()
        warm: dict = {}
        if tracking.mode == "incremental":
            warm = {key: state[key] for key in cls._WARM}
        steps = np.asarray(state["steps"])
        if steps.size and steps[-1] == trainer.step and not tracking.settings()["verify_every"]:
            n = steps.size
            warm["steps"] = np.zeros(1, dtype=steps.dtype)
            for key in cls._RECORD:
                a = np.asarray(state[key])
                warm[key] = a[a.size - a.size // n:].copy()
        rho = None
        if tracking.mode == "structured" and trainer.has_bulk and np.isfinite(trainer.bulk_rho):
            rho = float(trainer.bulk_rho)
        return cls(net._writes, tracking.settings(), basis, warm, rho)

    def applies(self, tracking: Tracking, basis) -> bool:
        return self.basis is basis and {**self.settings, "every": 0} == {**tracking.settings(), "every": 0}

    def hand_over(self, trainer) -> None:
        """Writes the last record and the warm starts into ``trainer``'s fresh tracker."""
        if not self.warm:
            return
        state = trainer.tracking_state()
        state.update(self.warm)
        trainer.restore_tracking(state)


def _setup_tracking(trainer, net, problem, optimizer, steps, tracking: Tracking, basis, *,
                    resume: dict | None = None, at_init: bool = False,
                    carry: _TrackingCarry | None = None) -> dict:
    """Gives a wide network's ``trainer`` its tracker.  Returns what the tracker is built from,
    for checkpoints: ``{"ref_u": [...], "ref_v": [...], "rho0": float or None}``.

    ``basis``: the reference basis computed before the trainer existed (or None).  ``resume``:
    the tracking part of a checkpoint (:func:`deeplinear.checkpoint.load`).  The tracker is then
    rebuilt from the stored bases and ρ(0) of the original call, not from ``net``, whose weights
    may no longer be the ones that call started from (a resume in the same process); a
    ``basis`` given now must equal the stored one.  ``at_init``: whether the network was at its
    initial weights when the call began; ``carry``: what the previous call on it left, with the
    weights unchanged since (:class:`_TrackingCarry`).

    "structured": ρ(t) is the trainer's bulk value (``Trainer.set_bulk`` with no loss terms,
    the recursion of bulk.hpp), from ρ(0) = ε at init, else the bulk value the weights have.
    """
    from .optim import GD
    from .parsimony import structure_residual, structure_tol, target_off_basis
    from .problems import Factorization

    cfg = tracking.settings()
    mode, k = cfg["mode"], cfg["k"]
    if resume is not None:
        ref_u = [np.ascontiguousarray(u, dtype=np.float64) for u in resume["ref_u"]]
        ref_v = [np.ascontiguousarray(v, dtype=np.float64) for v in resume["ref_v"]]
        given = tracking.basis
        if given is not None and not (
                len(given.U) == len(ref_u)
                and all(np.array_equal(a, b) for a, b in zip(list(given.U) + list(given.V), ref_u + ref_v))):
            raise ValueError("checkpoint: was written by a run with another reference basis (basis=); "
                             "delete it or pass another path")
    else:
        ref_u = [] if basis is None else list(basis.U)
        ref_v = [] if basis is None else list(basis.V)
    rho0 = None
    if mode == "structured":
        # also with basis= given: a ReLU network has no invariant structure to read
        net._require_linear("track='structured' (the invariant structure of MATH.md §2)")
        if not ref_u:
            raise ValueError("track: 'structured' needs a factorization with square layers (or basis=)")
        if not isinstance(optimizer, GD) or net.init != "orthogonal" and net.init != "given":
            raise ValueError("track: 'structured' is exact only for GD / momentum from an orthogonal init")
        if not isinstance(problem, Factorization):
            raise ValueError("track: 'structured' is exact only for factorization")
        if resume is not None:
            rho0 = resume["rho0"]
            if rho0 is None:
                raise ValueError("checkpoint: its tracking state lacks rho(0) of the structured run")
        elif at_init and tracking.basis is None:
            rho0 = basis.init_scale  # the invariant basis of these weights and this problem
        elif carry is not None and carry.rho is not None:
            rho0 = carry.rho  # where the previous structured call on these weights ended
        else:
            # A continued run, or a basis given by the caller (made for other weights, another
            # target or another ε, it would give wrong values): the recursion restarts from the
            # current bulk value (the optimizer state is fresh, b(0) = 0), once the weights are
            # checked to have the invariant form in that basis and, for a given basis, the target
            # to lie in its span (else the form does not last).
            if tracking.basis is not None:
                off = target_off_basis(problem, basis)
                if off > structure_tol(net):
                    raise ValueError(f"basis: the target is off span(U_L,1) x span(V_1,1) of the given basis by "
                                     f"{off:.2e} (relative): track='structured' needs the invariant basis of "
                                     "this problem (dl.invariant_basis(net, problem), the default)")
            sr = structure_residual(net, basis)
            if np.max(sr["residual"]) > structure_tol(net):
                raise ValueError(
                    f"track: 'structured' needs weights of the invariant form U diag(W~, rho I) Vᵀ; "
                    f"the current weights are off by {np.max(sr['residual']):.2e} (relative)")
            rho0 = float(np.mean(sr["rho"]))
        # advanced by the trainer with every update (a resume restores its state)
        trainer.set_bulk(rho0, 0.0)
    if mode == "incremental" and k is None:
        k = ref_u[0].shape[1] if ref_u else min(net.dims)
    trainer.set_tracking(net._net, mode, cfg["every"], 0 if k is None else k, cfg["tol"], cfg["max_iter"],
                         cfg["verify_every"], ref_u, ref_v)
    if carry is not None:
        carry.hand_over(trainer)
    return {"ref_u": ref_u, "ref_v": ref_v, "rho0": rho0}


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # delay: short runs print nothing
    return tqdm(total=total, unit="step", delay=0.5, dynamic_ncols=True, leave=False)
