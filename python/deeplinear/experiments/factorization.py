"""One deep matrix factorization, its loss and the singular values of layer 1:
``deeplinear run factorization`` (the smallest experiment; a good sweep target)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np

import deeplinear as dl

from ..plotting import plot_factorization
from ._base import Check, Experiment, ExperimentResult, check_training_memory, param, register
from ._common import stable_lr, target_spectrum

BULK_TOL = 1e-10  # max |s − |ρ(T)|| / |ρ(T)| over the d − 2r bulk singular values of W_1 (MATH.md §2)
FIGURE_POINTS = 100  # about this many SVDs of W_1 along the run (the figure)


@register
@dataclass(frozen=True)
class FactorizationExperiment(Experiment):
    """A deep matrix factorization with orthogonal init trained by GD (MATH.md §1–2).

    ``dl.problems.factorization(width, rank, seed)`` (``Φ = A Bᵀ/√r``), a
    ``DeepLinearNetwork(depth, width, init="orthogonal", init_scale=ε)``, ``steps`` GD steps,
    an exact SVD of ``W_1`` at about ``rows`` steps (printed as a table).  The default step size
    is 0.6× the stability edge ``2/(c L σ₁^{2−2/L})`` of the target (η ≈ 20 at d = 100, r = 5,
    seed 0), so that any width and rank train.

    Checks: the run did not diverge and the loss decreased (final ≤ initial), and the law of
    parsimony's bulk: the ``width − 2·rank`` singular values of ``W_1`` at the end closest to
    the predicted ``|ρ(T)|`` (:func:`deeplinear.rho_schedule`, as ``parsimony`` selects them:
    the lower learning values may cross below ρ, so not simply the smallest) all equal it
    (``max |s − |ρ(T)|| / |ρ(T)| ≤ 1e-10``).  It fails when the law does not hold (e.g. Adam
    instead of GD: the bulk values spread apart and leave ρ).  Files: ``training.npz`` / ``.json`` (the
    training :class:`deeplinear.Result`), ``singular_values_layer1.npz`` (about 100 SVDs of
    ``W_1``) and ``factorization.png`` (loss and singular values of ``W_1``, with matplotlib).  Metrics (the
    columns of a sweep): ``training_final_loss``, ``bulk_value``, ``bulk_spread`` (relative spread
    of the bulk), ``bulk_rho`` (the predicted ``|ρ(T)|``), ``bulk_rho_error`` (the check's
    value), ``top_value``.
    """

    name = "factorization"
    description = "one deep matrix factorization (orthogonal init, GD): loss and singular values of W_1"
    threads = 1

    width: int = param(100, "width d of the square layers (and of the target)", low=1)
    rank: int = param(5, "rank r of the target", low=1)
    depth: int = param(3, "number of layers L", low=1)
    init_scale: float = param(1.0, "ε of the orthogonal init W_l(0) = ε O_l", low=0.0, low_open=True)
    lr: Optional[float] = param(None, "GD step size η (None: 0.6 x the stability edge, 20 at the defaults)", low=0.0, low_open=True)
    steps: int = param(5000, "GD steps", low=0)
    reduction: Literal["mean", "sum"] = param("mean", "loss reduction: mean (c = 1/d²) or sum (c = 1)")
    seed: int = param(0, "seed of the target and the init", low=0)
    rows: int = param(10, "lines of the printed singular-value table", low=1)

    def quick(self) -> "FactorizationExperiment":
        return replace(self, steps=500)

    def validate(self) -> None:
        from ._base import ConfigError

        if self.rank > self.width:
            raise ConfigError(f"rank: must be <= width = {self.width}, got {self.rank}")
        check_training_memory([self.width] * (self.depth + 1), self.width, "width")

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        net = dl.DeepLinearNetwork(depth=self.depth, width=self.width, init="orthogonal",
                                   init_scale=self.init_scale, seed=self.seed)
        prob = dl.problems.factorization(self.width, self.rank, seed=self.seed,
                                         reduction=self.reduction)
        lr = self.lr if self.lr is not None else stable_lr(
            float(target_spectrum(self.width, self.rank, self.seed)[0]), prob.c, self.depth, 0.6)
        k = min(3, self.rank)
        table_steps, table_sv = [], []

        def snapshot(step: int, net_: dl.DeepLinearNetwork) -> None:
            table_steps.append(step)
            table_sv.append(np.linalg.svd(net_.weight(1), compute_uv=False))

        # SVDs at about FIGURE_POINTS steps for the figure; the table prints about `rows` of them
        table_every = max(1, self.steps // self.rows)
        every = max(1, table_every // max(1, FIGURE_POINTS // self.rows))
        r = dl.train(net, prob, dl.GD(lr=lr), steps=self.steps, progress=progress,
                     callback=snapshot, callback_every=every)
        losses = dict(zip(r.steps.tolist(), r.train_loss.tolist()))
        res.log(f"deep matrix factorization: d={self.width}, rank={self.rank}, depth={self.depth}, "
                f"eps={self.init_scale}, lr={lr:.4g}, {self.reduction} loss, GD")
        n_bulk = self.width - 2 * self.rank
        hdr = f"{'step':>7} {'loss':>11} " + " ".join(f"{'s' + str(i + 1):>8}" for i in range(k))
        if n_bulk > 0:
            hdr += f" {'bulk s(' + str(2 * self.rank + 1) + '..' + str(self.width) + ')':>24}"
        res.log(hdr)
        for step, s in zip(table_steps, table_sv):
            if step % table_every and step != table_steps[-1]:
                continue
            line = f"{step:7d} {losses.get(step, float('nan')):11.4e} " + " ".join(f"{v:8.4f}" for v in s[:k])
            if n_bulk > 0:
                line += f" {s[2 * self.rank:].min():11.6f}..{s[2 * self.rank:].max():.6f}"
            res.log(line)
        res.log(f"status: {r.status} after {r.n_steps} steps, {r.elapsed:.2f} s")
        res.save_training("training", r)
        res.save_arrays("singular_values_layer1", {"steps": np.asarray(table_steps),
                                                   "singular_values": np.asarray(table_sv)})
        res.figure("factorization", plot_factorization, steps=r.steps, loss=r.train_loss,
                   sv_steps=np.asarray(table_steps), singular_values=np.asarray(table_sv),
                   rank=self.rank, title=f"d={self.width}, r={self.rank}, L={self.depth}, "
                                         f"eps={self.init_scale:g}, lr={lr:.4g}, {self.reduction} loss, GD")
        last = table_sv[-1]
        # the bulk: the d − 2r values closest to the predicted |ρ(T)| (dl.rho_schedule, the scalar
        # recursion of MATH.md §2), as parsimony does.  Not "closest to their median": when the
        # bulk is not a clear majority (d ≲ 4r) the median lies between the bulk and the lower
        # learning values, which then get into the "bulk".
        with warnings.catch_warnings():  # a recursion that overflows gives inf/NaN: a failed check
            warnings.simplefilter("ignore", RuntimeWarning)
            rho_t = abs(float(dl.rho_schedule(self.init_scale, lr, self.depth, table_steps[-1],
                                              reduction_constant=prob.c)[-1]))
        if n_bulk > 0 and np.isfinite(rho_t):
            bulk = last[np.argsort(np.abs(last - rho_t), kind="stable")[:n_bulk]]
        else:
            bulk = np.array([np.nan])
        spread = float((bulk.max() - bulk.min()) / max(bulk.max(), np.finfo(float).tiny))
        rho_err = float(np.max(np.abs(bulk - rho_t)) / max(rho_t, np.finfo(float).tiny))
        res.metric("top_value", float(last[0]))
        res.metric("bulk_value", float(np.median(bulk)))
        res.metric("bulk_spread", spread)
        res.metric("bulk_rho", rho_t)
        res.metric("bulk_rho_error", rho_err)
        res.check(Check.at_most("final loss / initial loss", r.final_loss / r.train_loss[0], 1.0,
                                note=r.status))
        if n_bulk > 0:
            res.check(Check.at_most(f"max |s − |ρ(T)|| / |ρ(T)| over the {n_bulk} bulk singular values of W_1",
                                    rho_err, BULK_TOL,
                                    note=f"law of parsimony: all equal |ρ(T)| = {rho_t:.6g}; spread {spread:.1e}"))
