"""Experiments on exact compression (MATH.md §3): ``deeplinear run equivalence`` and
``deeplinear run iteration-time``.

* :class:`EquivalenceExperiment` — the paper's ``equiv_traj_L2`` comparison: a wide deep
  matrix factorization (d = 1000, r = 10, L = 3, ε = 1e-3, mean loss, orthogonal init) and its
  compressed network (``dl.compress`` + ``dl.train``) trained by GD with the same step size;
  their losses and the singular values of every layer, wide (exact SVD of the d × d weights)
  against compressed (``CompressedNetwork.singular_values()``: the 2r block values and ρ).
* :class:`IterationTimeExperiment` — the paper's ``comp_iter_time``: time per GD step of the
  wide network, the compressed network and the reduced network (``dl.reduced_network``, no
  d × d matrix anywhere) as the width grows, the reduced one up to d = 10⁶.

matplotlib is optional (``pip install "deeplinear[plot]"``): without it the experiments still
compute, print and save their results (``.npz`` / ``.json``) and say how to get the figure.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

PLOT_HINT = 'pip install "deeplinear[plot]"'
LOSS_TOL = 1e-10  # wide vs compressed, max relative loss difference (the paper's claim: equal)
SV_TOL = 1e-10    # wide vs compressed, max |s_wide − s_comp| / s_max per record
STABILITY = 0.9   # default step size: this fraction of the stability edge (see stable_lr)


def have_matplotlib() -> bool:
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


# -- helpers ------------------------------------------------------------------------------------

def target_spectrum(d: int, rank: int, seed: int) -> np.ndarray:
    """The r singular values of ``dl.problems.factorization(d, rank, seed).target`` (same draws:
    ``A`` then ``B`` from ``default_rng(seed)``, ``Φ = A Bᵀ/√r``), in ``O(d r²)`` without the
    d × d matrix (``σ(A Bᵀ) = σ(R_A R_Bᵀ)`` for ``A = Q_A R_A``, ``B = Q_B R_B``)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, rank))
    b = rng.standard_normal((d, rank))
    ra = np.linalg.qr(a, mode="r")
    rb = np.linalg.qr(b, mode="r")
    return np.linalg.svd(ra @ rb.T, compute_uv=False) / np.sqrt(rank)


def stability_edge(sigma_max: float, c: float, depth: int) -> float:
    """``2 / (c L σ₁^{2−2/L})``: GD on ``(c/2)‖W_L⋯W_1 − Φ‖²`` is unstable at the balanced
    minimum above this step size (the largest Hessian eigenvalue there is ``c L σ₁^{2−2/L}``).
    With ε = 1e-3, d = 1000, r = 10 a step of 0.9× the edge reaches 1e-10 in about 18k steps; 1.0×
    oscillates and does not converge."""
    return 2.0 / (c * depth * sigma_max ** (2.0 - 2.0 / depth))


def stable_lr(sigma_max: float, c: float, depth: int, fraction: float = STABILITY) -> float:
    return fraction * stability_edge(sigma_max, c, depth)


def _numpy_compressed_losses(comp, problem, lr: float, steps: int) -> np.ndarray:
    """The compressed dynamics (blocks + ρ terms) re-implemented in NumPy: same mathematics as
    the core, other summation order.  Its distance to the core's losses is the round-off floor
    of the trajectory (GD amplifies round-off while it escapes the saddle at the origin)."""
    from .compression import _compressed_problem
    from .parsimony import rho_schedule

    _, phi, _, _, _, _ = _compressed_problem(comp, problem)
    c = problem.c
    # the bulk's loss terms (c/2)(d−2r)ρ^{2L} (GD, no weight decay), written out here as the oracle
    rho = rho_schedule(comp.rho, lr, comp.depth, steps, reduction_constant=c)
    with np.errstate(over="ignore", invalid="ignore"):
        extra = 0.5 * c * (comp.width - comp.rank2) * rho ** (2 * comp.depth)
    w = [x.astype(np.float64) for x in comp.blocks.weights]
    L = len(w)
    out = np.empty(steps + 1)
    for t in range(steps + 1):
        pre = [w[0]]
        for l in range(1, L):
            pre.append(w[l] @ pre[-1])
        r = pre[-1] - phi
        out[t] = 0.5 * c * float(np.vdot(r, r)) + extra[t]
        if t == steps:
            break
        s = c * r
        for l in range(L - 1, -1, -1):
            g = s @ pre[l - 1].T if l > 0 else s
            if l > 0:
                s = w[l].T @ s
            w[l] -= lr * g
    return out


def _rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)


def _learning_and_bulk(s: np.ndarray, rank2: int) -> tuple[np.ndarray, float]:
    """Of one layer's singular values: the 2r farthest from the bulk (the median, in s²), and
    the median (the bulk value |ρ|)."""
    from .parsimony import learning_mask

    return np.sort(s[learning_mask(s, rank2)])[::-1], float(np.median(s))


def _row(check: str, value: float, threshold: float, note: str = "") -> dict:
    ok = bool(np.isfinite(value) and value <= threshold)
    return {"check": check, "value": float(value), "threshold": float(threshold), "passed": ok,
            "note": note}


def _print_checks(rows: list[dict]) -> None:
    w = max(len(r["check"]) for r in rows)
    print(f"{'check':<{w}}  {'value':>9}  {'threshold':>9}  result")
    for r in rows:
        print(f"{r['check']:<{w}}  {r['value']:9.2e}  {r['threshold']:9.1e}  "
              f"{'PASS' if r['passed'] else 'FAIL'}" + (f"  ({r['note']})" if r["note"] else ""))


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


# -- equivalence --------------------------------------------------------------------------------

@dataclass(frozen=True)
class EquivalenceExperiment:
    """Wide vs compressed training: the paper's ``equiv_traj_L2`` figure, checked.

    Setting (the paper's): d = 1000, r = 10, L = 3, ε = 1e-3, mean loss (c = 1/d²), orthogonal
    init, target ``dl.problems.factorization(d, r, seed)`` (``Φ = A Bᵀ/√r``, σ₁ ≈ 345 for seed
    0), GD.  The paper's η = 0.1 never leaves the initial plateau (MATH.md §6: about 1.6e8
    steps); the default step size here is 0.9× the stability edge ``2/(c L σ₁^{4/3})``
    (η ≈ 248 for seed 0): the compressed run reaches loss 1e-10 in about 18k steps.  (η = 2000,
    MATH.md §6's example for the paper's own normalization of Φ, diverges with this one.)

    The compressed network is trained to the loss ``tol`` (1e-10).  The wide network costs
    about 0.12 s per step at d = 1000, so by default it runs the first ``default_wide_steps``
    (1000) steps, capped at ``wide_seconds`` (120 s) of training: that is still the plateau,
    where the learning singular values have grown by a few percent.  ``--steps N`` runs the wide
    network for exactly N steps (no time cap; ``--steps 18000`` covers the whole trajectory, about
    40 min); ``--quick`` runs the whole trajectory of both at d = 100, r = 5 (a few seconds).

    Checks: the max relative difference of the losses over the wide run's steps (≤ 1e-10; for a
    run through the escape the threshold is raised to 10× the round-off floor of the trajectory,
    measured by the same compressed dynamics in NumPy: GD amplifies round-off there, and two
    implementations of the *same* dynamics differ by ~1e-9 near loss 1e-10), the max difference
    of the singular values of every layer (full SVD of the wide weights vs the compressed
    network's, relative to the largest, ≤ 1e-10), and that the compressed run reached ``tol``.

    Files: ``equivalence.npz`` (losses, differences, singular values), ``equivalence.json``
    (settings, timings, checks) and ``equivalence.png`` (with matplotlib).
    """

    d: int = 1000
    rank: int = 10
    depth: int = 3
    init_scale: float = 1e-3
    reduction: str = "mean"
    lr: float | None = None  # None: STABILITY × stability_edge
    steps: int | None = None  # wide steps; None: default_wide_steps (or all if full), time cap
    default_wide_steps: int = 1000
    wide_seconds: float = 120.0  # time cap of the wide run when `steps` is not given
    full: bool = False  # the wide network runs as many steps as the compressed one needed
    records: int = 10  # exact SVDs of the wide layers (d = 1000: ~1 s per record)
    samples: int = 300  # points of the compressed singular-value curves
    tol: float = 1e-10
    max_compressed_steps: int = 500_000
    seed: int = 0
    quick: bool = False

    def quick_version(self) -> "EquivalenceExperiment":
        return replace(self, d=100, rank=5, full=True, records=40, quick=True)

    def describe(self) -> str:
        return (f"d={self.d}, r={self.rank}, L={self.depth}, eps={self.init_scale:g}, "
                f"{self.reduction} loss, orthogonal init, GD, seed {self.seed}")

    def run(self, out_dir: str, progress: bool = True) -> dict:
        import deeplinear as dl
        from .parsimony import range_bases

        os.makedirs(out_dir, exist_ok=True)
        t_start = time.perf_counter()
        print(f"wide vs compressed (MATH.md §3; the paper's equiv_traj_L2): deeplinear "
              f"{dl.__version__}, {dl.get_num_threads()} threads")
        prob = dl.problems.factorization(self.d, self.rank, seed=self.seed, reduction=self.reduction)
        C, R, _ = range_bases(prob.target, self.rank)
        sigma = np.linalg.svd(C.T @ prob.target @ R, compute_uv=False)
        edge = stability_edge(float(sigma[0]), prob.c, self.depth)
        lr = float(self.lr) if self.lr is not None else STABILITY * edge
        print(f"{self.describe()}; σ(Φ) = {sigma[0]:.1f} .. {sigma[-1]:.1f}, stability edge "
              f"2/(c L σ₁^(2-2/L)) = {edge:.1f}, lr = {lr:.4g} ({lr / edge:.2f} × edge)")
        t0 = time.perf_counter()
        net = dl.DeepLinearNetwork(self.depth, self.d, init="orthogonal", init_scale=self.init_scale,
                                   seed=self.seed)
        t_init = time.perf_counter() - t0

        # 1. compressed, all the way to tol (the net is untouched: compress is cheap)
        t0 = time.perf_counter()
        comp = dl.compress(net, prob)
        t_compress = time.perf_counter() - t0
        comp0 = dl.compress(net, prob)  # kept at init: the NumPy re-run (round-off floor)
        comp2 = dl.compress(net, prob)  # trained in segments: singular values along the way
        rc = dl.train(comp, prob, dl.GD(lr=lr), steps=self.max_compressed_steps, tol=self.tol,
                      progress=progress)
        n_comp = rc.n_steps
        print(f"compressed (2r = {comp.rank2}): {rc.status} after {n_comp} steps, loss "
              f"{rc.train_loss[0]:.4e} -> {rc.final_loss:.3e}; compress {t_compress * 1e3:.1f} ms + "
              f"train {rc.elapsed:.3f} s ({rc.elapsed / max(n_comp, 1) * 1e6:.2f} us/step)")

        # 2. the wide run's length
        if self.steps is not None:
            n_wide, cap = min(int(self.steps), n_comp), None
        elif self.full or self.quick:
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
                seg_loss.append(rc.train_loss[0])
            sv_c.append([np.sort(np.linalg.svd(w.astype(np.float64), compute_uv=False))[::-1]
                         for w in comp2.blocks.weights])
            rho_c.append(comp2.rho)
        sv_c = np.asarray(sv_c)  # (n, L, 2r)
        rho_c = np.asarray(rho_c)
        c_steps_a = np.asarray(c_steps)
        seg_same = bool(np.array_equal(np.asarray(seg_loss), rc.train_loss[c_steps_a]))

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
        print(f"wide (d = {self.d}): {n_done} steps in {t_wide:.1f} s "
              f"({t_wide / max(n_done, 1) * 1e3:.1f} ms/step incl. {len(sv_w_steps)} exact SVD records)"
              + (f"; {stopped}" if stopped else ""))
        if n_done < n_comp:
            print(f"  the wide run covers steps 0..{n_done} of the {n_comp} the compressed one needed"
                  f" (loss {wide_loss[-1]:.4e}); --steps {n_comp} runs it through (about "
                  f"{n_comp * t_wide / max(n_done, 1) / 60:.0f} min here), --quick does it at d = 100")

        # 5. comparisons
        comp_loss = rc.train_loss[: n_done + 1]
        rel = _rel_diff(wide_loss, comp_loss)
        floor_loss = _numpy_compressed_losses(comp0, prob, lr, n_done)
        floor = _rel_diff(floor_loss, comp_loss)
        max_rel, max_floor = float(rel.max()), float(floor.max())
        loss_thr = max(LOSS_TOL, 10 * max_floor)
        idx = np.searchsorted(c_steps_a, sv_w_steps)
        sv_err = 0.0
        bulk_n = self.d - comp.rank2
        for k, j in enumerate(idx):
            for l in range(self.depth):
                sc = np.sort(np.concatenate([sv_c[j, l], np.full(bulk_n, abs(rho_c[j]))]))[::-1]
                sv_err = max(sv_err, float(np.max(np.abs(sv_w[k, l] - sc)) / sc[0]))
        rows = [
            _row(f"max relative loss difference, wide vs compressed (steps 0..{n_done})", max_rel,
                 loss_thr, "" if loss_thr == LOSS_TOL else
                 f"10x the round-off floor {max_floor:.1e}: NumPy vs core, same compressed dynamics"),
            _row(f"max |s_wide - s_comp| / s_1, every layer, {len(sv_w_steps)} records", sv_err, SV_TOL),
            _row(f"compressed run reached loss {self.tol:g}", 0.0 if rc.status == "converged" else np.inf, 0.0,
                 f"{n_comp} steps"),
        ]
        print(f"round-off floor of the trajectory (NumPy vs core, compressed): max relative loss "
              f"difference {max_floor:.2e}; segmented compressed run == single run: {seg_same}")
        _print_checks(rows)
        passed = all(r["passed"] for r in rows) and seg_same

        # 6. files
        files = ["equivalence.npz", "equivalence.json"]
        np.savez(os.path.join(out_dir, "equivalence.npz"),
                 compressed_steps=rc.steps,
                 compressed_loss=rc.train_loss, wide_steps=np.arange(n_done + 1), wide_loss=wide_loss,
                 relative_difference=rel, roundoff_floor=floor, sv_compressed_steps=c_steps_a,
                 sv_compressed_blocks=sv_c, rho_compressed=rho_c, sv_wide_steps=sv_w_steps,
                 sv_wide=sv_w, lr=lr)
        summary = {
            "experiment": "equivalence", "passed": passed, "settings": asdict(self), "lr": lr,
            "stability_edge": edge, "target_singular_values": sigma,
            "compressed": {"status": rc.status, "steps": n_comp, "final_loss": rc.final_loss,
                           "compress_seconds": t_compress, "train_seconds": rc.elapsed},
            "wide": {"steps": n_done, "seconds": t_wide, "init_seconds": t_init, "stopped": stopped,
                     "final_loss": float(wide_loss[-1])},
            "max_relative_loss_difference": max_rel, "roundoff_floor": max_floor,
            "max_sv_difference": sv_err, "segmented_equals_single": seg_same, "checks": rows,
        }
        with open(os.path.join(out_dir, "equivalence.json"), "w") as fh:
            json.dump(_jsonable(summary), fh, indent=1)
        if have_matplotlib():
            plot_equivalence(os.path.join(out_dir, "equivalence.png"), comp_loss=rc.train_loss,
                             wide_loss=wide_loss, rel=rel, floor=floor, c_steps=c_steps_a, sv_c=sv_c,
                             rho_c=rho_c, w_steps=sv_w_steps, sv_w=sv_w, rank2=comp.rank2,
                             title=f"Wide vs compressed: {self.describe()}, lr = {lr:.4g}")
            files.append("equivalence.png")
        print(f"{'PASS' if passed else 'FAIL'}; total {time.perf_counter() - t_start:.1f} s")
        print(f"wrote {out_dir}/: {', '.join(files)}")
        if not have_matplotlib():
            print(f"no figure: matplotlib is not installed; get it with  {PLOT_HINT}")
        return summary


def plot_equivalence(path: str, *, comp_loss, wide_loss, rel, floor, c_steps, sv_c, rho_c, w_steps,
                     sv_w, rank2: int, title: str = "") -> None:
    """Loss curves (log y), their relative difference, and per-layer singular values (layer 1
    on the left): compressed as lines (2r block values, |ρ| dashed), wide as markers (its 2r
    learning values and the bulk, from an exact SVD of the d × d weights)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    L = sv_c.shape[1]
    n_wide = len(wide_loss) - 1
    zoom = n_wide < 0.2 * (len(comp_loss) - 1)  # the wide run covers only the start: zoom on it
    fig = Figure(figsize=(4.2 * max(L, 2), 11.0 if zoom else 7.6), layout="constrained")
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(3 if zoom else 2, max(L, 2))
    half = max(L, 2) // 2
    ax = fig.add_subplot(gs[0, :half + (max(L, 2) % 2)])
    ax.semilogy(np.arange(len(comp_loss)), comp_loss, color="C0", lw=2, label="compressed (2r × 2r blocks + ρ)")
    ax.semilogy(np.arange(len(wide_loss)), wide_loss, color="C3", ls="--", lw=1.5, label="wide (d × d)")
    if len(wide_loss) < len(comp_loss):
        ax.axvline(len(wide_loss) - 1, color="C3", lw=0.8, alpha=0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("loss")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(gs[0, half + (max(L, 2) % 2):])
    tiny = 1e-17
    ax2.semilogy(np.arange(len(rel)), np.maximum(rel, tiny), color="C3", lw=1, label="|wide − compressed| / compressed")
    ax2.semilogy(np.arange(len(floor)), np.maximum(floor, tiny), color="0.5", lw=0.8, alpha=0.8,
                 label="round-off floor (NumPy vs core, compressed)")
    ax2.axhline(LOSS_TOL, color="k", ls=":", lw=0.8, label=f"{LOSS_TOL:g}")
    ax2.set_xlabel("step")
    ax2.set_ylabel("relative loss difference")
    ax2.set_title("relative loss difference (0 drawn at 1e-17)", fontsize=10)
    ax2.legend(fontsize=7)
    for l in range(L):
        a = fig.add_subplot(gs[1, l])
        for i in range(rank2):
            a.semilogy(c_steps, sv_c[:, l, i], color="C0", lw=1.2, label="compressed: block" if i == 0 else None)
        a.semilogy(c_steps, np.abs(rho_c), color="C0", ls="--", lw=1.2, label="compressed: |ρ| (d − 2r values)")
        for k, s in enumerate(w_steps):
            learn, bulk = _learning_and_bulk(sv_w[k, l], rank2)
            a.semilogy(np.full(rank2, s), learn, "o", ms=4, mfc="none", color="C3",
                       label="wide: learning values" if k == 0 else None)
            a.semilogy([s], [bulk], "s", ms=4, mfc="none", color="C2", label="wide: bulk" if k == 0 else None)
        a.set_title(f"layer {l + 1}: singular values")
        a.set_xlabel("step")
        if l == 0:
            a.legend(fontsize=7)
        if zoom:
            z = fig.add_subplot(gs[2, l])
            m = c_steps <= n_wide
            for i in range(rank2):
                z.plot(c_steps[m], sv_c[m, l, i], color="C0", lw=1.0)
            z.plot(c_steps[m], np.abs(rho_c[m]), color="C0", ls="--", lw=1.0)
            for k, s in enumerate(w_steps):
                learn, bulk = _learning_and_bulk(sv_w[k, l], rank2)
                z.plot(np.full(rank2, s), learn, "o", ms=4, mfc="none", color="C3")
                z.plot([s], [bulk], "s", ms=4, mfc="none", color="C2")
            z.set_title(f"layer {l + 1}: zoom on the wide run (steps 0..{n_wide})", fontsize=9)
            z.set_xlabel("step")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)


# -- iteration time -----------------------------------------------------------------------------

@dataclass(frozen=True)
class IterationTimeExperiment:
    """Time per GD step, wide vs compressed vs reduced, as the width d grows (the paper's
    ``comp_iter_time``).  r = 10, L = 3, ε = 1e-3, mean loss, orthogonal init, target
    ``dl.problems.factorization(d, r, seed)``, step size 0.9× the stability edge.

    * wide: one core step (forward with the loss, backward sweep, update; the private trainer
      that ``dl.train`` runs), best of ``repeats`` timed steps after one warm-up step, for
      ``wide_widths``.  A width whose predicted time (from the previous width's step × (d'/d)³)
      exceeds ``wide_budget`` seconds is skipped and reported as such.
    * compressed: ``dl.compress(net, problem)`` of the same (untrained) network, then
      ``dl.train(comp, …, steps=n)``: the whole call (ρ(t) schedule and loss offsets in Python,
      the 2r × 2r steps in the core) divided by n, best of ``repeats``.
    * reduced: ``dl.reduced_network(d, L, σ(Φ), …)`` (overlap sampled in O(r³), no d × d matrix;
      the spectrum of Φ computed in O(d r²)), timed as the compressed one, up to d = 10⁶.

    ``--steps N`` sets the timed wide steps per width (default: ``repeats``, more at small widths:
    a second's worth, up to 50).  Files:
    ``iteration_time.npz`` / ``.json`` and ``iteration_time.png`` (with matplotlib).
    """

    rank: int = 10
    depth: int = 3
    init_scale: float = 1e-3
    reduction: str = "mean"
    wide_widths: tuple = (100, 200, 500, 1000, 2000, 4000)
    reduced_widths: tuple = (100, 1000, 10_000, 100_000, 1_000_000)
    steps: int | None = None  # timed wide steps per width (default: repeats)
    repeats: int = 3
    small_steps: int = 20_000  # steps per timed dl.train call, compressed / reduced
    wide_budget: float = 90.0  # seconds allowed for the timed wide steps of one width
    seed: int = 0
    quick: bool = False

    def quick_version(self) -> "IterationTimeExperiment":
        return replace(self, wide_widths=(100, 200, 500), reduced_widths=(100, 1000, 10_000, 100_000),
                       small_steps=5000, quick=True)

    def run(self, out_dir: str, progress: bool = True) -> dict:
        import deeplinear as dl
        from .training import _CORE_TRAINER

        os.makedirs(out_dir, exist_ok=True)
        t_start = time.perf_counter()
        print(f"time per GD step, wide vs compressed vs reduced (the paper's comp_iter_time): "
              f"deeplinear {dl.__version__}, {dl.get_num_threads()} threads")
        print(f"r={self.rank}, L={self.depth}, eps={self.init_scale:g}, {self.reduction} loss, "
              f"orthogonal init, lr = 0.9 x stability edge, seed {self.seed}")
        n_wide = int(self.steps) if self.steps is not None else self.repeats
        rows: dict[int, dict] = {}
        prev = None  # (d, seconds per wide step)
        for d in self.wide_widths:
            row = rows.setdefault(d, {"d": d})
            prob = dl.problems.factorization(d, self.rank, seed=self.seed, reduction=self.reduction)
            sig = target_spectrum(d, self.rank, self.seed)
            lr = stable_lr(float(sig[0]), prob.c, self.depth)
            t0 = time.perf_counter()
            net = dl.DeepLinearNetwork(self.depth, d, init="orthogonal", init_scale=self.init_scale,
                                       seed=self.seed)
            row["init_s"] = time.perf_counter() - t0
            # compressed (before the wide network trains: compress is then cheap)
            t0 = time.perf_counter()
            comp = dl.compress(net, prob)
            row["compress_s"] = time.perf_counter() - t0
            row["compressed_s"] = self._time_small(dl, comp, prob, lr)
            # wide
            predicted = None if prev is None else prev[1] * (d / prev[0]) ** 3
            if predicted is not None and predicted * (n_wide + 1) > self.wide_budget:
                row["wide_s"] = float("nan")
                row["wide_skipped"] = (f"predicted {predicted:.1f} s/step x {n_wide + 1} steps > "
                                       f"budget {self.wide_budget:g} s")
                print(f"d={d:>8}: wide skipped ({row['wide_skipped']})")
            else:
                opt = dl.GD(lr=lr)
                a, b = prob._core_args(net.dtype)
                tr = _CORE_TRAINER[net.dtype](net._core, prob.kind, a, b, prob.reduction, opt._config(),
                                              1, -1.0, 0)
                t0 = time.perf_counter()
                tr.run(1)  # warm-up (first touch of the buffers)
                t_warm = time.perf_counter() - t0
                # small widths: more samples (best of a second's worth, up to 50 steps)
                n_timed = n_wide if self.steps is not None else int(
                    min(50, max(n_wide, math.ceil(1.0 / max(t_warm, 1e-6)))))
                ts = []
                for _ in range(n_timed):
                    t0 = time.perf_counter()
                    tr.run(1)
                    ts.append(time.perf_counter() - t0)
                if tr.status != "running":
                    raise RuntimeError(f"wide d={d}: training stopped ({tr.status}) while timing")
                row["wide_s"] = min(ts)
                row["wide_median_s"] = float(np.median(ts))
                row["wide_steps_timed"] = n_timed
                prev = (d, min(ts))
            self._print_row(row)
            del net, comp, prob
        for d in self.reduced_widths:
            row = rows.setdefault(d, {"d": d})
            t0 = time.perf_counter()
            sig = target_spectrum(d, self.rank, self.seed)
            lr = stable_lr(float(sig[0]), 1.0 / d ** 2, self.depth)
            comp, rprob = dl.reduced_network(d, self.depth, sig, init_scale=self.init_scale,
                                             seed=self.seed, reduction=self.reduction)
            row["reduced_setup_s"] = time.perf_counter() - t0
            row["reduced_s"] = self._time_small(dl, comp, rprob, lr)
            self._print_row(row, reduced=True)

        ds = sorted(rows)
        table = [rows[d] for d in ds]
        print()
        hdr = (f"{'d':>9} {'wide ms/step':>13} {'compressed us/step':>19} {'reduced us/step':>16} "
               f"{'wide/compressed':>16} {'init s':>8} {'compress ms':>12}")
        print(hdr)
        for r in table:
            w, c, rd = r.get("wide_s", np.nan), r.get("compressed_s", np.nan), r.get("reduced_s", np.nan)
            ratio = w / c if np.isfinite(w) and np.isfinite(c) else np.nan
            print(f"{r['d']:>9} {_fmt(w * 1e3, 13, '.3f')} {_fmt(c * 1e6, 19, '.2f')} "
                  f"{_fmt(rd * 1e6, 16, '.2f')} {_fmt(ratio, 16, '.0f')} {_fmt(r.get('init_s', np.nan), 8, '.2f')} "
                  f"{_fmt(r.get('compress_s', np.nan) * 1e3, 12, '.1f')}")
        red = np.array([r["reduced_s"] for r in table if "reduced_s" in r])
        flat = float(red.max() / red.min()) if red.size else float("nan")
        if red.size:
            print(f"reduced per-step time, max/min over d = {min(self.reduced_widths)}.."
                  f"{max(self.reduced_widths)}: {flat:.2f} (flat: independent of d)")
        skipped = [r["d"] for r in table if "wide_skipped" in r]
        if skipped:
            print(f"wide skipped at d = {skipped} (time budget {self.wide_budget:g} s per width; "
                  f"raise wide_budget to include them)")
        summary = {"experiment": "iteration-time", "passed": True, "settings": asdict(self),
                   "rows": table, "reduced_max_over_min": flat, "wide_skipped": skipped,
                   "threads": dl.get_num_threads(), "build": dl.build_info()}
        with open(os.path.join(out_dir, "iteration_time.json"), "w") as fh:
            json.dump(_jsonable(summary), fh, indent=1)
        col = lambda k: np.array([r.get(k, np.nan) for r in table], dtype=float)  # noqa: E731
        np.savez(os.path.join(out_dir, "iteration_time.npz"), d=np.array(ds), wide_s=col("wide_s"),
                 compressed_s=col("compressed_s"), reduced_s=col("reduced_s"), init_s=col("init_s"),
                 compress_s=col("compress_s"))
        files = ["iteration_time.npz", "iteration_time.json"]
        if have_matplotlib():
            plot_iteration_time(os.path.join(out_dir, "iteration_time.png"), d=np.array(ds),
                                wide=col("wide_s"), compressed=col("compressed_s"), reduced=col("reduced_s"),
                                title=f"Time per GD step (r={self.rank}, L={self.depth}, "
                                      f"{dl.get_num_threads()} threads)")
            files.append("iteration_time.png")
        print(f"total {time.perf_counter() - t_start:.1f} s; wrote {out_dir}/: {', '.join(files)}")
        if not have_matplotlib():
            print(f"no figure: matplotlib is not installed; get it with  {PLOT_HINT}")
        return summary

    def _time_small(self, dl, comp, problem, lr: float) -> float:
        """Seconds per step of ``dl.train(comp, …, steps=n)`` (whole call / n), best of repeats.
        Each call continues the same run (GD: no optimizer state; ρ carried)."""
        best = np.inf
        for _ in range(max(1, self.repeats)):
            t0 = time.perf_counter()
            res = dl.train(comp, problem, dl.GD(lr=lr), steps=self.small_steps, progress=False)
            dt = time.perf_counter() - t0
            if res.status != "max_steps":
                raise RuntimeError(f"compressed/reduced training stopped ({res.status}) while timing")
            best = min(best, dt / self.small_steps)
        return float(best)

    @staticmethod
    def _print_row(row: dict, reduced: bool = False) -> None:
        d = row["d"]
        if reduced:
            print(f"d={d:>8}: reduced {row['reduced_s'] * 1e6:.2f} us/step "
                  f"(setup {row['reduced_setup_s'] * 1e3:.1f} ms)")
            return
        w = row.get("wide_s", np.nan)
        print(f"d={d:>8}: wide {_fmt(w * 1e3, 0, '.3f')} ms/step, compressed "
              f"{row['compressed_s'] * 1e6:.2f} us/step (init {row['init_s']:.2f} s, compress "
              f"{row['compress_s'] * 1e3:.1f} ms)")


def _fmt(x: float, width: int, spec: str) -> str:
    return f"{'-':>{width}}" if not np.isfinite(x) else f"{x:>{width}{spec}}"


def plot_iteration_time(path: str, *, d, wide, compressed, reduced, title: str = "") -> None:
    """Time per step vs d, log-log, with a d³ guide through the wide points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for y, lab, st in ((wide, "wide (d × d)", "o-"), (compressed, "compressed (compress + 2r × 2r)", "s-"),
                       (reduced, "reduced (no d × d matrix)", "^-")):
        m = np.isfinite(y)
        if m.any():
            ax.loglog(d[m], y[m], st, label=lab)
    m = np.isfinite(wide)
    if m.sum() >= 1:
        d0, w0 = d[m][-1], wide[m][-1]
        xs = np.array([d[m][0], d[m][-1]], dtype=float)
        ax.loglog(xs, w0 * (xs / d0) ** 3, ":", color="0.5", label="∝ d³")
    ax.set_xlabel("width d")
    ax.set_ylabel("seconds per GD step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110)
