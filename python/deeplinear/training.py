"""The training entry point: ``dl.train(net, problem, optimizer, steps)``."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from typing import Callable

import numpy as np

from . import _validation as V
from ._io import check_writable
from ._loader import _core
from .network import DeepLinearNetwork
from .optim import Optimizer
from .problems import Problem
from .result import Result

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
        raise TypeError(f"problem: must be a Factorization, Completion or Regression, got {type(problem).__name__}")
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
    train, test, grads = _CORE_GRADS[net.dtype](net._core, problem.kind, a, b, problem.reduction,
                                                weight_decay)
    return train, test, grads


def train(net: DeepLinearNetwork, problem: Problem, optimizer: Optimizer, steps: int, *,
          tol: float | None = None, record_every: int = 1, progress: bool = True,
          callback: Callable[[int, DeepLinearNetwork], None] | None = None,
          callback_every: int | None = None, on_divergence: str = "warn",
          track: str | None = None, track_every: int = 1, track_k: int | None = None,
          basis=None, track_tol: float = 1e-10, track_max_iter: int = 10,
          track_verify_every: int = 0, checkpoint: str | None = None,
          checkpoint_every: int | None = None, _core_extra: tuple = (),
          _core_setup: Callable | None = None) -> Result:
    """Train ``net`` in place on ``problem`` with ``optimizer`` for at most ``steps`` steps.

    Parameters
    ----------
    net : DeepLinearNetwork
        Updated in place.
    problem : Factorization, Completion or Regression
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
        the network it sees holds the weights after ``step`` steps.
    on_divergence : {"warn", "raise"}
        A non-finite loss or non-finite weights stop the run with status ``"diverged"``
        (history up to there kept) and a :class:`DivergenceWarning`, or raise
        :class:`DivergenceError`.
    track : {None, "full", "incremental", "structured"}
        Record singular values (and learning-subspace angles) of every layer every
        ``track_every`` steps, in the core (see :mod:`deeplinear.parsimony`):
        ``"full"`` an exact SVD per layer; ``"incremental"`` the top ``track_k`` triplets by a
        warm-started block Krylov iteration, each record's values certified by residual bounds
        to be within ``track_tol``·s₁ of the exact ones (with angles, also the top-2r residuals
        ≤ ``track_tol``·s₁), else a full SVD after ``track_max_iter`` block steps;
        ``"structured"`` (factorization, orthogonal init, GD or momentum) the exact values from
        one ``2r × 2r`` SVD per layer plus ρ(t), optionally checked against a full SVD every
        ``track_verify_every`` records.  Results in ``res.tracking``.
    track_k : int, optional
        Record the top k and bottom k singular values (all when None); incremental: top k
        (default 2r).
    basis : InvariantBasis, optional
        Reference subspaces for the angles (and the basis of ``"structured"``); computed with
        :func:`deeplinear.invariant_basis` when the problem is a factorization and omitted (if
        it exists: square layers, orthogonal init, ``2r ≤ d``; otherwise no angles are recorded).
        ``"structured"`` may continue a run (``net`` already trained by GD / momentum): ρ(t)
        then starts from the bulk value of the current weights.
    checkpoint : str or path, optional
        Write a checkpoint (weights, optimizer state, history and, with ``track``, the
        tracker's complete state) to this file every ``checkpoint_every`` steps (default
        ``steps // 100``) and at the end, atomically (write, then rename).  When the file
        exists, the same call resumes from it (bit-identical to an uninterrupted run, also after
        SIGKILL); a checkpoint of another run (network, problem, optimizer, record_every, tol or
        tracking settings differ) is refused with a ``ValueError``.

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
    A network is trained by one call at a time: a second call on it while it trains (another
    thread, or its own callback) raises ``ValueError``.
    """
    args = dict(locals())
    with net._training() if isinstance(net, DeepLinearNetwork) else contextlib.nullcontext():
        return _train(**args)


def _train(net, problem, optimizer, steps, *, tol, record_every, progress, callback, callback_every,
           on_divergence, track, track_every, track_k, basis, track_tol, track_max_iter,
           track_verify_every, checkpoint, checkpoint_every, _core_extra, _core_setup) -> Result:
    """:func:`train`, once the network is marked as being trained."""
    from .compression import CompressedNetwork

    if isinstance(net, CompressedNetwork):
        return _train_compressed(net, problem, optimizer, steps, tol=tol, record_every=record_every,
                                 progress=progress, on_divergence=on_divergence)
    _check_pair(net, problem)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: must be dl.GD, dl.Adam or dl.RMSProp, got {type(optimizer).__name__}")
    steps = V.integer(steps, "steps", low=0)
    tol = V.real(tol, "tol", low=0.0, allow_none=True)
    record_every = V.integer(record_every, "record_every", low=1)
    progress = V.boolean(progress, "progress")
    callback_every = V.integer(callback_every, "callback_every", low=1, allow_none=True)
    on_divergence = V.choice(on_divergence, "on_divergence", ("warn", "raise"))
    if callback is not None and not callable(callback):
        raise TypeError("callback: must be callable")

    if checkpoint is not None:
        checkpoint = check_writable(checkpoint, "checkpoint")
    track_settings = None if track is None else _track_settings(track, track_every, track_k, track_tol,
                                                                track_max_iter, track_verify_every)
    checkpoint_every = V.integer(checkpoint_every, "checkpoint_every", low=1, allow_none=True)
    if checkpoint is not None and checkpoint_every is None:
        checkpoint_every = max(1, steps // 100)
    _check_memory(net, problem, optimizer)
    elapsed_before = 0.0
    fp = None
    state = None
    if checkpoint is not None:
        from . import checkpoint as ckpt

        fp = ckpt.fingerprint(net, problem, optimizer, record_every, tol, track_settings)
        if os.path.exists(checkpoint):
            state = ckpt.load(checkpoint, fp)
            if state["step"] > steps:
                raise ValueError(f"steps: the checkpoint is at step {state['step']}, beyond steps={steps}")
    if track is not None and state is None:
        # Before the trainer exists: creating it hands the network to the core, after which the
        # initial weights the basis comes from would have to be regenerated from the seed.
        basis = _default_basis(net, problem, track_settings["mode"], basis)
    a, b = problem._core_args(net.dtype)
    trainer = _CORE_TRAINER[net.dtype](net._core, problem.kind, a, b, problem.reduction,
                                       optimizer._config(), record_every,
                                       -1.0 if tol is None else tol, steps, *_core_extra)
    if _core_setup is not None:
        _core_setup(trainer)
    tracker_from = None  # what the tracker is built from (stored in checkpoints)
    if track is not None:
        # Resumed: the tracker is rebuilt from the bases and ρ(0) of the original call (stored),
        # not from the network's weights now, then its state is written back.
        tracker_from = _setup_tracking(trainer, net, problem, optimizer, steps, track, track_every, track_k,
                                       basis, track_tol, track_max_iter, track_verify_every,
                                       resume=None if state is None else state["tracking"])
    if state is not None:
        for i, w in enumerate(state["weights"]):
            net._core.set_weight(i, np.ascontiguousarray(w, dtype=net.dtype))
        trainer.restore(state["step"], state["count"], state["trace"], state["first"], state["second"],
                        state["steps"], state["train"], state["test"])
        if track is not None:
            trainer.restore_tracking(state["tracking"]["state"])
        elapsed_before = state["elapsed"]
    bar = _progress_bar(steps, progress)
    if bar is not None and trainer.step:
        bar.update(trainer.step)
    status = "running"
    start = time.perf_counter()
    chunk = 1
    last_callback = -1  # step of the last callback call: none twice for the same step
    try:
        if callback is not None:
            callback(0, net)
            last_callback = 0
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
                callback(trainer.step, net)
                last_callback = trainer.step
            if checkpoint is not None and trainer.step % checkpoint_every == 0:
                ckpt.save(checkpoint, net, trainer, fp, elapsed_before + time.perf_counter() - start,
                          tracker_from)
            # grow or shrink the chunk towards _CHUNK_SECONDS of work
            per_step = dt / max(done, 1)
            chunk = int(max(1, min(chunk * 4, _CHUNK_SECONDS / max(per_step, 1e-9))))
        status = trainer.finish()
        if checkpoint is not None and status in ("running", "converged"):
            ckpt.save(checkpoint, net, trainer, fp, elapsed_before + time.perf_counter() - start,
                      tracker_from)
    except KeyboardInterrupt:
        status = "interrupted"
        # the loss at the step reached, so the history ends at the network's weights
        if trainer.status == "running" and trainer.finish() == "diverged":
            status = "diverged"
        if checkpoint is not None and trainer.status in ("running", "converged"):
            ckpt.save(checkpoint, net, trainer, fp, elapsed_before + time.perf_counter() - start,
                      tracker_from)
    finally:
        if bar is not None:
            bar.close()
    elapsed = elapsed_before + time.perf_counter() - start
    if status == "running":
        status = "max_steps"
    if callback is not None and status in ("max_steps", "converged") and trainer.step != last_callback:
        callback(trainer.step, net)

    h = trainer.history()
    result = Result(
        steps=np.asarray(h["steps"], dtype=np.int64),
        train_loss=np.asarray(h["train_loss"], dtype=np.float64),
        test_loss=np.asarray(h["test_loss"], dtype=np.float64) if problem.has_test_loss else None,
        status=status, n_steps=int(trainer.step), elapsed=elapsed,
        tracking=_tracking_arrays(trainer, net, track),
        meta={"network": net.describe(), "problem": problem.describe(),
              "optimizer": optimizer.describe(), "steps": steps, "tol": tol,
              "record_every": record_every, "version": _core.__version__})
    if status == "diverged":
        msg = (f"training diverged at step {trainer.step} (non-finite loss or weights); "
               f"the history up to there is kept, try a smaller lr")
        if on_divergence == "raise":
            raise DivergenceError(msg)
        warnings.warn(msg, DivergenceWarning, stacklevel=2)
    return result


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
    n_cols = problem.X.shape[1] if problem.kind == "regression" else net.dims[0]
    nbytes = _memory.training_bytes(net.dims, n_cols, net.dtype.itemsize, buffers,
                                    problem.kind == "regression")
    _memory.require(nbytes, "training (gradients, optimizer state, workspace)", "net")


def _train_compressed(comp, problem, optimizer, steps, **kw) -> Result:
    """Training of a CompressedNetwork: the blocks on the wide loss (through the fixed outer
    factors, with the wide c), plus ρ(t) and the wide loss terms it carries (exact case)."""
    from .compression import ApproximationWarning, ReducedFactorization, _compressed_problem
    from .optim import GD
    from .problems import Completion, Factorization

    if not isinstance(problem, (Factorization, Completion, ReducedFactorization)):
        raise TypeError(f"problem: a compressed network trains on a Factorization or Completion, "
                        f"got {type(problem).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: must be dl.GD, dl.Adam or dl.RMSProp, got {type(optimizer).__name__}")
    if problem.shape != (comp.width, comp.width):
        raise ValueError(f"problem: shape {problem.shape} does not match the compressed network's width {comp.width}")
    steps = V.integer(steps, "steps", low=0)
    exact = comp.exact and isinstance(optimizer, GD) and isinstance(problem, (Factorization, ReducedFactorization))
    if comp.exact and not exact:
        warnings.warn(f"compressed training is an approximation with {optimizer.name}: only GD and "
                      "momentum keep the invariant structure", ApproximationWarning, stacklevel=3)
    kind, a, b, left, right = _compressed_problem(comp, problem)
    inner = _InnerProblem(kind, a, b, problem.reduction, (comp.rank2, comp.rank2))
    extra = np.zeros(0)
    if not exact and kind == "factorization" and comp.basis is not None:
        # The approximation U A Vᵀ need not hold all of Φ (e.g. a Gaussian init's basis): its
        # wide loss is (c/2)(‖A − Φ̃‖² + ‖Φ − U Φ̃ Vᵀ‖²) (Pythagoras); the core sees only the first.
        outside = problem.target - comp.basis.U[-1] @ (a @ comp.basis.V[0].T)
        extra = np.full(steps + 1, 0.5 * problem.c * float(np.sum(outside * outside)))
    dt = comp.blocks.dtype
    cast = (lambda x: None if x is None else np.ascontiguousarray(x, dtype=dt))
    trainers = []

    def carry_bulk(trainer):
        # exact case: ρ(t) and its loss terms (c/2)(d−2r)ρ^{2L} + (λ/2)L(d−2r)ρ² advance in the
        # core with every step (the recursion of rho_schedule, bit for bit)
        trainer.set_bulk(comp.rho, float(comp.width - comp.rank2), problem.c)
        trainers.append(trainer)

    res = train(comp.blocks, inner, optimizer, steps,
                _core_extra=(extra.tolist(), problem.c, cast(left), cast(right)),
                _core_setup=carry_bulk if exact else None, **kw)
    if exact:
        comp.rho = float(trainers[0].bulk_rho)
        res.meta["rho"] = comp.rho
    comp.steps_trained += res.n_steps
    if comp.exact and not exact and res.n_steps > 0:
        # its blocks left the invariant structure and ρ was not carried: no longer a wide network
        comp.exact = False
        comp.reason = f"trained with {optimizer.name} on a {type(problem).__name__}"
    res.meta.update({"compressed": True, "exact": exact, "width": comp.width, "rank2": comp.rank2,
                     "problem": problem.describe()})
    return res


class _InnerProblem(Problem):
    """The problem handed to the core for a compressed network (internal)."""

    def __init__(self, kind, a, b, reduction, shape):
        super().__init__(reduction)
        self.kind, self._a, self._b, self._shape = kind, a, b, shape
        self.has_test_loss = kind == "completion"

    @property
    def shape(self):
        return self._shape

    @property
    def c(self):
        raise AttributeError("the inner problem uses the wide network's c")

    def _core_args(self, dtype):
        cast = (lambda x: None if x is None else np.ascontiguousarray(x, dtype=dtype))
        return cast(self._a), cast(self._b)

    def describe(self):
        return {"kind": self.kind, "reduction": self.reduction, "shape": list(self._shape)}


def _track_settings(track, every, k, tol, max_iter, verify_every) -> dict:
    """The tracking arguments, validated: also what a checkpoint's fingerprint holds of them."""
    return {"mode": V.choice(track, "track", ("full", "incremental", "structured")),
            "every": V.integer(every, "track_every", low=1),
            "k": V.integer(k, "track_k", low=1, allow_none=True),
            "tol": V.real(tol, "track_tol", low=0.0, low_open=True),
            "max_iter": V.integer(max_iter, "track_max_iter", low=1),
            "verify_every": V.integer(verify_every, "track_verify_every", low=0)}


def _default_basis(net, problem, track: str, basis):
    """The reference basis of tracking: ``basis`` when given, else the invariant basis of a
    factorization with square layers (None where there is none: 2r > d, a non-orthogonal init;
    an error for "structured", which needs it)."""
    from .parsimony import invariant_basis
    from .problems import Factorization

    if basis is not None or len(set(net.dims)) != 1 or not isinstance(problem, Factorization):
        return basis
    try:
        return invariant_basis(net, problem)
    except ValueError:
        if track == "structured":
            raise
        return None


def _setup_tracking(trainer, net, problem, optimizer, steps, track, every, k, basis, tol, max_iter,
                    verify_every, *, resume: dict | None = None) -> dict:
    """Gives ``trainer`` its tracker.  Returns what the tracker is built from, for checkpoints:
    ``{"ref_u": [...], "ref_v": [...], "rho0": float or None}``.

    ``resume``: the tracking part of a checkpoint (:func:`deeplinear.checkpoint.load`).  The
    tracker is then rebuilt from the stored bases and ρ(0) of the original call, not from
    ``net``, whose weights may no longer be the ones that call started from (a resume in the
    same process); a ``basis`` given now must equal the stored one.
    """
    from .optim import GD
    from .parsimony import InvariantBasis, _rho_schedule, structure_residual, structure_tol
    from .problems import Factorization

    cfg = _track_settings(track, every, k, tol, max_iter, verify_every)
    track, every, k, tol = cfg["mode"], cfg["every"], cfg["k"], cfg["tol"]
    max_iter, verify_every = cfg["max_iter"], cfg["verify_every"]
    if basis is not None and not isinstance(basis, InvariantBasis):
        raise TypeError(f"basis: must be an InvariantBasis, got {type(basis).__name__}")
    if resume is not None:
        ref_u = [np.ascontiguousarray(u, dtype=np.float64) for u in resume["ref_u"]]
        ref_v = [np.ascontiguousarray(v, dtype=np.float64) for v in resume["ref_v"]]
        if basis is not None and not (
                len(basis.U) == len(ref_u)
                and all(np.array_equal(a, b) for a, b in zip(list(basis.U) + list(basis.V), ref_u + ref_v))):
            raise ValueError("checkpoint: was written by a run with another reference basis (basis=); "
                             "delete it or pass another path")
    else:
        if basis is None:
            basis = _default_basis(net, problem, track, None)
        ref_u = [] if basis is None else list(basis.U)
        ref_v = [] if basis is None else list(basis.V)
    rho: list[float] = []
    rho0 = None
    if track == "structured":
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
        else:
            rho0 = basis.init_scale
            if any(not np.array_equal(w, w0) for w, w0 in zip(net.weights, basis.init)):
                # A continued run: the recursion restarts from the current bulk value (the
                # optimizer state is fresh, b(0) = 0), once the weights are checked to have the
                # invariant form.
                sr = structure_residual(net, basis)
                if np.max(sr["residual"]) > structure_tol(net):
                    raise ValueError(
                        f"track: 'structured' needs weights of the invariant form U diag(W~, rho I) Vᵀ; "
                        f"the current weights are off by {np.max(sr['residual']):.2e} (relative)")
                rho0 = float(np.mean(sr["rho"]))
        # a forward recursion: a longer budget on resume extends the same sequence
        rho = _rho_schedule(rho0, optimizer.lr, net.depth, steps,
                            weight_decay=optimizer.weight_decay, reduction_constant=problem.c,
                            momentum=optimizer.momentum, nesterov=optimizer.nesterov).tolist()
    if track == "incremental" and k is None:
        k = ref_u[0].shape[1] if ref_u else min(net.dims)
    trainer.set_tracking(net._core, track, every, 0 if k is None else k, tol, max_iter, verify_every,
                         ref_u, ref_v, rho)
    return {"ref_u": ref_u, "ref_v": ref_v, "rho0": rho0}


def _tracking_arrays(trainer, net, track):
    if track is None:
        return None
    t = trainer.tracking(net.depth)
    return {"mode": track, **t}


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # delay: short runs print nothing
    return tqdm(total=total, unit="step", delay=0.5, dynamic_ncols=True, leave=False)
