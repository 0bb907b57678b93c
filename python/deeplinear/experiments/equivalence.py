"""Wide vs compressed training (MATH.md §3; the paper's ``equiv_traj_L2``):
``deeplinear run equivalence``."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np

import deeplinear as dl

from ..plotting import plot_equivalence
from ._base import Check, Experiment, ExperimentResult, param, register
from ._common import STABILITY, rel_diff, stability_edge, target_spectrum

LOSS_TOL = 1e-10  # wide vs compressed, max relative loss difference (the paper's claim: equal)
SV_TOL = 1e-10    # wide vs compressed, max |s_wide − s_comp| / s_max per record


@register
@dataclass(frozen=True)
class EquivalenceExperiment(Experiment):
    """Wide vs compressed training: the paper's ``equiv_traj_L2`` figure, checked.

    Setting (the paper's): d = 1000, r = 10, L = 3, ε = 1e-3, mean loss (c = 1/d²), orthogonal
    init, target ``dl.problems.factorization(d, r, seed)`` (``Φ = A Bᵀ/√r``, σ₁ ≈ 345 for seed
    0), GD.  The paper's η = 0.1 never leaves the initial plateau (MATH.md §6: about 1.6e8
    steps); the default step size here is 0.9× the stability edge ``2/(c L σ₁^{4/3})``
    (η ≈ 248 for seed 0): the compressed run reaches loss 1e-10 in about 18k steps.  (η = 2000,
    MATH.md §6's example for the paper's own normalization of Φ, diverges with this one.)

    The compressed network is trained to the loss ``tol`` (1e-10).  The wide network costs
    about 0.12 s per step at d = 1000, so by default it runs the first ``default_wide_steps``
    (1000) steps (at most as many as the compressed run needed), capped at ``wide_seconds``
    (120 s) of training: that is still the plateau, where the learning singular values have
    grown by a few percent.  ``--set steps=N`` runs the wide network for exactly N steps (no
    time cap; ``--set steps=18000`` covers the whole trajectory, about 40 min); when N is more
    than the compressed run needed to reach ``tol``, the compressed network continues past
    ``tol`` (without it) to step N, so both are compared over all N steps (only a divergence
    of either run stops them earlier; the log says so).  ``--quick`` runs the whole
    trajectory of both at d = 40, r = 2 (a few seconds).

    Checks: the max relative difference of the losses over the wide run's steps (≤ 1e-10; for a
    run through the escape the threshold is raised to 10× the round-off floor of the trajectory:
    GD amplifies round-off there, so two computations of the *same* dynamics differ by ~1e-9 near
    loss 1e-10; the floor is measured as the relative change of the compressed losses when the
    target is perturbed by 4 units of round-off, ``Φ (1 + 4u)``), the max difference of the
    singular values of every layer (full SVD of the wide weights vs the compressed network's,
    relative to the largest, ≤ 1e-10), that training the compressed network in segments
    reproduces the single run exactly, and that the compressed run reached ``tol``.

    Files: ``compressed.npz`` / ``.json`` (the compressed run's :class:`deeplinear.Result`),
    ``equivalence.npz`` (losses, differences, singular values), ``equivalence.json`` (settings,
    timings) and ``equivalence.png`` (with matplotlib).
    """

    name = "equivalence"
    description = "wide vs compressed training (the paper's equiv_traj_L2): equal losses and singular values"
    # One core thread: threaded OpenBLAS slows down ~10x whenever another process competes for
    # the cores (measured at d = 100 on a loaded 2-core machine: 76 s with one thread, 650 s with two).
    threads = 1

    width: int = param(1000, "width d of the wide network and the target", low=2)
    rank: int = param(10, "rank r of the target (2r <= width)", low=1)
    depth: int = param(3, "number of layers L", low=1)
    init_scale: float = param(1e-3, "ε of the orthogonal init", low=0.0, low_open=True)
    reduction: Literal["mean", "sum"] = param("mean", "loss reduction: mean (c = 1/d²) or sum (c = 1)")
    lr: Optional[float] = param(None, "GD step size (None: 0.9 x the stability edge)", low=0.0, low_open=True)
    steps: Optional[int] = param(None, "wide steps, exactly, no time cap (None: default_wide_steps, or all if full)", low=1)
    default_wide_steps: int = param(1000, "wide steps when steps is None and full is false", low=1)
    wide_seconds: float = param(120.0, "time cap of the wide run when steps is None", low=0.0)
    full: bool = param(False, "the wide network runs as many steps as the compressed one needed")
    records: int = param(10, "exact SVDs of the wide layers (d = 1000: ~1 s per record)", low=1)
    samples: int = param(300, "points of the compressed singular-value curves", low=1)
    tol: float = param(1e-10, "the compressed run stops at this loss (> 0)", low=0.0)
    max_compressed_steps: int = param(500_000, "step budget of the compressed run", low=1)
    seed: int = param(0, "seed of the target and the init", low=0)

    def quick(self) -> "EquivalenceExperiment":
        return replace(self, width=40, rank=2, full=True, records=10, samples=60)

    def validate(self) -> None:
        from ._base import ConfigError

        if 2 * self.rank > self.width:
            raise ConfigError(f"rank: 2 * rank must be <= width = {self.width}, got rank = {self.rank}")
        if not self.tol > 0:
            raise ConfigError(f"tol: must be > 0 (the compressed run is trained to this loss and "
                              f"checked against it), got {self.tol!r}")

    def describe(self) -> str:
        return (f"d={self.width}, r={self.rank}, L={self.depth}, eps={self.init_scale:g}, "
                f"{self.reduction} loss, orthogonal init, GD, seed {self.seed}")

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        res.log(f"wide vs compressed (MATH.md §3; the paper's equiv_traj_L2): deeplinear "
                f"{dl.__version__}, {dl.get_num_threads()} threads")
        prob = dl.problems.factorization(self.width, self.rank, seed=self.seed, reduction=self.reduction)
        sigma = target_spectrum(self.width, self.rank, self.seed)
        edge = stability_edge(float(sigma[0]), prob.c, self.depth)
        lr = float(self.lr) if self.lr is not None else STABILITY * edge
        res.log(f"{self.describe()}; σ(Φ) = {sigma[0]:.1f} .. {sigma[-1]:.1f}, stability edge "
                f"2/(c L σ₁^(2-2/L)) = {edge:.1f}, lr = {lr:.4g} ({lr / edge:.2f} × edge)")
        t0 = time.perf_counter()
        net = dl.DeepLinearNetwork(self.depth, self.width, init="orthogonal", init_scale=self.init_scale,
                                   seed=self.seed)
        t_init = time.perf_counter() - t0

        # 1. compressed, all the way to tol (the net is untouched: compress is cheap)
        t0 = time.perf_counter()
        comp = dl.compress(net, prob)
        t_compress = time.perf_counter() - t0
        # the round-off floor: the same compressed dynamics for the target times (1 + 4u)
        prob_p = dl.Factorization(prob.target * (1.0 + 4.0 * np.finfo(float).eps),
                                  reduction=self.reduction)
        comp_p = dl.compress(net, prob_p)
        comp2 = dl.compress(net, prob)  # trained in segments: singular values along the way
        rc = dl.train(comp, prob, dl.GD(lr=lr), steps=self.max_compressed_steps, tol=self.tol,
                      progress=progress)
        n_comp = rc.n_steps
        res.log(f"compressed (2r = {comp.rank2}): {rc.status} after {n_comp} steps, loss "
                f"{rc.train_loss[0]:.4e} -> {rc.final_loss:.3e}; compress {t_compress * 1e3:.1f} ms + "
                f"train {rc.elapsed:.3f} s ({rc.elapsed / max(n_comp, 1) * 1e6:.2f} us/step)")

        # 2. the wide run's length; --set steps=N is honored exactly: past the compressed run's
        #    end (it stopped at tol) the compressed network continues without tol to step N, so
        #    the two are compared over all N steps
        comp_steps, comp_loss_all = rc.steps, rc.train_loss
        if self.steps is not None:
            n_wide, cap = int(self.steps), None
            if n_wide > n_comp and rc.status != "diverged":
                rx = dl.train(comp, prob, dl.GD(lr=lr), steps=n_wide - n_comp, progress=progress)
                comp_steps = np.concatenate([rc.steps, n_comp + rx.steps[1:]])
                comp_loss_all = np.concatenate([rc.train_loss, rx.train_loss[1:]])
                res.log(f"  steps={n_wide} > the {n_comp} steps the compressed run needed: it continues "
                        f"without tol to step {n_comp + rx.n_steps} ({rx.status}), loss {rx.final_loss:.3e}")
                if rx.status != "max_steps":
                    n_wide = n_comp + rx.n_steps
            elif n_wide > n_comp:
                n_wide = n_comp
                res.log(f"  the compressed run diverged at step {n_comp}: the wide run stops there too")
        elif self.full:
            n_wide, cap = n_comp, None
        else:
            n_wide, cap = min(self.default_wide_steps, n_comp), self.wide_seconds
        n_wide = max(1, n_wide)
        every = max(1, n_wide // max(1, self.records))
        rec_steps = sorted(set(range(0, n_wide + 1, every)) | {n_wide})

        # 3. compressed again, in segments, for its singular values (GD has no optimizer state
        #    and ρ continues from comp.rho: the segments reproduce the single run exactly)
        plot_every = max(1, n_comp // max(1, self.samples))
        zoom_every = max(1, n_wide // max(1, self.samples // 3))  # dense over the wide run too
        c_steps = sorted(set(range(0, n_comp + 1, plot_every)) | {n_comp} | set(rec_steps)
                         | set(range(0, n_wide + 1, zoom_every)))
        sv_c, rho_c, seg_loss = [], [], []
        done = 0
        for s in c_steps:
            if s > done:
                r_ = dl.train(comp2, prob, dl.GD(lr=lr), steps=s - done, record_every=s - done,
                              progress=False)
                done = s
                seg_loss.append(r_.train_loss[-1])
            else:
                seg_loss.append(comp_loss_all[0])
            sv_c.append([np.sort(np.linalg.svd(w.astype(np.float64), compute_uv=False))[::-1]
                         for w in comp2.blocks.weights])
            rho_c.append(comp2.rho)
        sv_c = np.asarray(sv_c)  # (n, L, 2r)
        rho_c = np.asarray(rho_c)
        c_steps_a = np.asarray(c_steps)

        # 4. wide, in segments: losses every step, exact SVD of every layer at the records
        wide_loss: list[float] = []
        sv_w, sv_w_steps = [], []
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=n_wide, unit="step", desc="wide", leave=False, dynamic_ncols=True)
        t0 = time.perf_counter()
        stopped = None
        done = 0
        for s in rec_steps:
            if s > done:
                rw = dl.train(net, prob, dl.GD(lr=lr), steps=s - done, progress=False)
                wide_loss += rw.train_loss[(1 if wide_loss else 0):].tolist()
                done += rw.n_steps
                if bar is not None:
                    bar.update(rw.n_steps)
                if rw.status != "max_steps":
                    stopped = f"wide run {rw.status} at step {done}"
            sv_w_steps.append(done)
            sv_w.append([np.linalg.svd(w, compute_uv=False) for w in net.weights])
            if stopped:
                break
            if cap is not None and time.perf_counter() - t0 > cap and done < n_wide:
                stopped = f"time cap of {cap:g} s reached at step {done}"
                break
        t_wide = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        wide_loss = np.asarray(wide_loss, dtype=np.float64)
        n_done = len(wide_loss) - 1
        sv_w = np.asarray(sv_w)  # (m, L, d)
        sv_w_steps = np.asarray(sv_w_steps)
        res.log(f"wide (d = {self.width}): {n_done} steps in {t_wide:.1f} s "
                f"({t_wide / max(n_done, 1) * 1e3:.1f} ms/step incl. {len(sv_w_steps)} exact SVD records)"
                + (f"; {stopped}" if stopped else ""))
        if n_done < n_comp:
            res.log(f"  the wide run covers steps 0..{n_done} of the {n_comp} the compressed one needed"
                    f" (loss {wide_loss[-1]:.4e}); --set steps={n_comp} runs it through (about "
                    f"{n_comp * t_wide / max(n_done, 1) / 60:.0f} min here), --quick does it at d = 40")

        # 5. comparisons
        comp_loss = comp_loss_all[: n_done + 1]
        rel = rel_diff(wide_loss, comp_loss)
        floor_loss = dl.train(comp_p, prob_p, dl.GD(lr=lr), steps=n_done, progress=False).train_loss
        floor = rel_diff(floor_loss, comp_loss)
        max_rel, max_floor = float(rel.max()), float(floor.max())
        loss_thr = max(LOSS_TOL, 10 * max_floor)
        idx = np.searchsorted(c_steps_a, sv_w_steps)
        sv_err = 0.0
        bulk_n = self.width - comp.rank2
        for k, j in enumerate(idx):
            for l in range(self.depth):
                sc = np.sort(np.concatenate([sv_c[j, l], np.full(bulk_n, abs(rho_c[j]))]))[::-1]
                sv_err = max(sv_err, float(np.max(np.abs(sv_w[k, l] - sc)) / sc[0]))
        seg_diff = float(np.max(np.abs(np.asarray(seg_loss) - comp_loss_all[c_steps_a])))
        res.check(
            Check.at_most(f"max relative loss difference, wide vs compressed (steps 0..{n_done})",
                          max_rel, loss_thr, note="" if loss_thr == LOSS_TOL else
                          f"10x the round-off floor {max_floor:.1e}: target perturbed by 4u"),
            Check.at_most(f"max |s_wide - s_comp| / s_1, every layer, {len(sv_w_steps)} records",
                          sv_err, SV_TOL),
            Check.at_most("compressed run in segments vs single run, max |loss difference|",
                          seg_diff, 0.0),
            Check.at_most(f"compressed run reached loss {self.tol:g} (final loss / tol)",
                          rc.final_loss / self.tol, 1.0, note=f"{n_comp} steps, {rc.status}"))
        res.log(f"round-off floor of the trajectory (compressed, target times 1 + 4u): max relative "
                f"loss difference {max_floor:.2e}")
        for key, value in (("max_relative_loss_difference", max_rel), ("roundoff_floor", max_floor),
                           ("max_sv_difference", sv_err), ("wide_steps", n_done),
                           ("wide_seconds", t_wide), ("lr", lr)):
            res.metric(key, value)

        # 6. files
        res.save_training("compressed", rc)
        res.save_arrays("equivalence", dict(
            compressed_steps=comp_steps, compressed_loss=comp_loss_all,
            wide_steps=np.arange(n_done + 1), wide_loss=wide_loss, relative_difference=rel,
            roundoff_floor=floor, sv_compressed_steps=c_steps_a, sv_compressed_blocks=sv_c,
            rho_compressed=rho_c, sv_wide_steps=sv_w_steps, sv_wide=sv_w, lr=lr), info={
            "lr": lr, "stability_edge": edge, "target_singular_values": sigma,
            "compressed": {"status": rc.status, "steps": n_comp, "final_loss": rc.final_loss,
                           "compress_seconds": t_compress, "train_seconds": rc.elapsed},
            "wide": {"steps": n_done, "seconds": t_wide, "init_seconds": t_init, "stopped": stopped,
                     "final_loss": float(wide_loss[-1])},
            "max_relative_loss_difference": max_rel, "roundoff_floor": max_floor,
            "max_sv_difference": sv_err})
        res.figure("equivalence", plot_equivalence, comp_loss=comp_loss_all, wide_loss=wide_loss,
                   rel=rel, floor=floor, c_steps=c_steps_a, sv_c=sv_c, rho_c=rho_c,
                   w_steps=sv_w_steps, sv_w=sv_w, rank2=comp.rank2, loss_tol=LOSS_TOL,
                   title=f"Wide vs compressed: {self.describe()}, lr = {lr:.4g}")
