"""Command line: ``deeplinear run [EXPERIMENT]`` and ``deeplinear info``.

``deeplinear run`` (= ``deeplinear run parsimony``) reproduces the paper's Figure 1, the law of
parsimony: it trains two deep matrix factorizations with orthogonal init while recording an
exact SVD of every layer, checks the predicted structure (bulk singular values = |ρ(t)|,
invariant subspaces) in a PASS/FAIL table, and writes the results and one figure per setting to
a fresh folder under ``results/``.  ``deeplinear run factorization`` trains a single width-100
factorization and prints a table of the singular values of layer 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class FactorizationExperiment:
    """A small deep matrix factorization with orthogonal init (the law of parsimony setting)."""

    d: int = 100
    rank: int = 5
    depth: int = 3
    init_scale: float = 1.0
    lr: float = 20.0
    steps: int = 5000
    reduction: str = "mean"
    seed: int = 0
    rows: int = 10  # lines of the printed table

    def quick_version(self) -> "FactorizationExperiment":
        return replace(self, steps=500)

    def run(self, out_dir: str, progress: bool = True) -> dict:
        import deeplinear as dl

        net = dl.DeepLinearNetwork(depth=self.depth, width=self.d, init="orthogonal",
                                   init_scale=self.init_scale, seed=self.seed)
        prob = dl.problems.factorization(self.d, self.rank, seed=self.seed, reduction=self.reduction)
        opt = dl.GD(lr=self.lr)
        k = min(3, self.rank)
        table_steps, table_sv = [], []

        def snapshot(step: int, net_: "dl.DeepLinearNetwork") -> None:
            s = np.linalg.svd(net_.weight(1), compute_uv=False)
            table_steps.append(step)
            table_sv.append(s)

        every = max(1, self.steps // self.rows)
        res = dl.train(net, prob, opt, steps=self.steps, progress=progress,
                       callback=snapshot, callback_every=every)
        losses = dict(zip(res.steps.tolist(), res.train_loss.tolist()))
        print(f"deep matrix factorization: d={self.d}, rank={self.rank}, depth={self.depth}, "
              f"eps={self.init_scale}, lr={self.lr}, {self.reduction} loss, GD")
        hdr = f"{'step':>7} {'loss':>11} " + " ".join(f"{'s' + str(i + 1):>8}" for i in range(k))
        hdr += f" {'bulk s(' + str(2 * self.rank + 1) + '..' + str(self.d) + ')':>24}"
        print(hdr)
        for step, s in zip(table_steps, table_sv):
            bulk = s[2 * self.rank:]
            lead = " ".join(f"{v:8.4f}" for v in s[:k])
            print(f"{step:7d} {losses.get(step, float('nan')):11.4e} {lead} "
                  f"{bulk.min():11.6f}..{bulk.max():.6f}")
        print(f"status: {res.status} after {res.n_steps} steps, {res.elapsed:.2f} s")
        res.meta["experiment"] = {"name": "factorization", **self.__dict__}
        os.makedirs(out_dir, exist_ok=True)
        res.save(os.path.join(out_dir, "result.npz"))
        res.save_json(os.path.join(out_dir, "result.json"))
        np.savez(os.path.join(out_dir, "singular_values_layer1.npz"),
                 steps=np.asarray(table_steps), singular_values=np.asarray(table_sv))
        print(f"wrote {out_dir}/result.npz, result.json, singular_values_layer1.npz")
        return res.summary()


# -- the law of parsimony figure (the default) --------------------------------------------------

# Thresholds of the printed check table.  An SVD determines a singular subspace only to about
# u·s₁/gap (Wedin; u = 2^-53, gap = distance between the learning values and the others): when a
# block value crosses ρ (setting B, t ≈ 140–270) the gap falls to ~1e-6 and the measured angles
# rise to ~1e-9.  So the raw angle gets an absolute threshold of 1e-7, and the angle times
# gap/s₁, which the SVD's accuracy bounds by a small multiple of u, one of 1e-12.
RESIDUAL_TOL = 1e-10       # ‖E_l‖_F / ‖W_l‖_F, the off-structure part of every layer
RHO_TOL = 1e-10            # |ρ_measured − ρ_predicted| (|ρ| ≤ ε = 1 here: absolute = relative)
ANGLE_TOL = 1e-7           # largest tracked principal angle, every record and layer
SCALED_ANGLE_TOL = 1e-12   # the same times gap/s₁


@dataclass(frozen=True)
class ParsimonySetting:
    """One factorization run of the parsimony figure: ``‖Φ‖₂ = 1``, orthogonal init, GD."""

    name: str
    label: str
    d: int
    rank: int
    depth: int
    init_scale: float
    lr: float
    reduction: str
    steps: int
    records: int  # about this many exact-SVD records: track_every = steps // records
    structure_records: int = 50  # about this many structure_residual fits (and the last step)
    xscale: str = "linear"  # step axis of the figure: "linear" or "symlog"

    @property
    def track_every(self) -> int:
        return max(1, self.steps // self.records)

    @property
    def structure_every(self) -> int:
        """A multiple of ``track_every``: the structure fits fall on SVD records."""
        k = self.track_every
        return k * max(1, self.steps // (self.structure_records * k))

    def describe(self) -> str:
        c = "c = 1/d²" if self.reduction == "mean" else "c = 1"
        return (f"d={self.d}, r={self.rank}, L={self.depth}, eps={self.init_scale:g}, "
                f"lr={self.lr:g}, {self.reduction} loss ({c}), GD, orthogonal init, ‖Φ‖₂ = 1")


@dataclass(frozen=True)
class ParsimonyExperiment:
    """The law of parsimony (MATH.md §2; the paper's Figure 1), measured and checked.

    Two deep matrix factorizations with orthogonal init ``W_l(0) = ε O_l`` and a Gaussian rank-r
    target rescaled to ``‖Φ‖₂ = 1``, trained by GD with an exact SVD of every layer at a few
    hundred recorded steps (``track="full"``, with the learning-subspace angles):

    * **A, the paper's Figure 1**: d = 30, r = 3, L = 3, ε = 1, η = 1, **mean** reduction
      (c = 1/d², the paper's convention, MATH.md §1), 6000 steps, linear step axis.  With the
      **sum** reduction η = 1 is degenerate: ``η c ε^{2L−2} = 1`` sends ρ to exactly 0 at t = 1
      (MATH.md §2), so the bulk collapses in one step instead of shrinking.  Mean reduction with
      η = 1 is the same iteration as sum with η = 1/900: the top 3 singular values of every
      layer settle at ``σ_i(Φ)^{1/3}`` ≈ 1, 0.88, 0.81 within a few thousand steps (loss 1.0e-4
      at t = 6000) while the 24 bulk values follow ``ρ(t) ≈ (1 + 4t/900)^{-1/4}`` from 1 down to
      0.44: a clear separation; the other 3 values of the 2r-block stay just below ρ.
    * **B, larger**: d = 200, r = 5, L = 3, ε = 1, η = 0.1, **sum** reduction (the setting of
      MATH.md §2's example), 300 steps, every step recorded, step axis linear to 10 then
      logarithmic.  The top 5 values settle within ~30 steps while ρ falls from 1 to ~0.3; at
      t ≈ 140–270 the lower half of the 2r-block of W_1 and W_L crosses ρ (the ordering pitfall
      of MATH.md §2), which the tracker handles by identifying the learning subspace by
      subspace, not by rank.  Mean reduction would need η ≈ 44 and thousands of d = 200 steps
      (> 20 s); an exact SVD of three 200 × 200 layers costs ~10 ms per record.

    Beyond the tracked singular values and angles, about 50 of the records and the last step
    also get :func:`deeplinear.parsimony.structure_residual` (through the training callback),
    and the scalar recursion :func:`deeplinear.parsimony.rho_schedule` gives the predicted ρ(t).

    Checks (PASS/FAIL, printed as a table and written to ``checks.json``), over all records:
    the relative off-structure residual, ``|ρ_measured − ρ_predicted|`` from the structure fit
    and from the ``d − 2r`` bulk singular values of every layer (they must all equal
    ``|ρ(t)|``), the largest tracked principal angle θ, and θ·gap/s₁ (an SVD fixes a singular
    subspace only to ``O(u·s₁/gap)``, and the gap shrinks to ~1e-6 where a block value crosses
    ρ in setting B, so θ reaches ~1e-9 there while θ·gap/s₁ stays ~1e-15).  When a layer's spectrum
    is fully degenerate (all singular values equal, e.g. ``W_l(0) = ε O_l``) every subspace is a
    singular subspace and the SVD's pick is arbitrary: the invariant basis is then a valid choice
    and the angle is 0 (the tracker's raw values are kept in the ``.npz``).

    Files per setting: ``setting_A.npz`` / ``.json`` (:meth:`Result.save` / ``save_json``; the
    tracking arrays plus ``rho_predicted``, ``structure_steps``, ``structure_residual``,
    ``structure_rho``) and ``setting_A.png`` (with matplotlib).
    """

    steps: int | None = None  # override the step budget of every setting
    seed: int = 0
    quick: bool = False  # small budgets (tests, smoke runs)
    # Core threads for the run (``--threads`` overrides).  One: the layers are at most 200 wide
    # and most of the time goes to the per-record SVDs, so a second thread gains little, while
    # threaded OpenBLAS slows down ~10x whenever another process competes for the cores.
    threads: int | None = 1

    def quick_version(self) -> "ParsimonyExperiment":
        return replace(self, quick=True)

    def settings(self) -> list[ParsimonySetting]:
        a = ParsimonySetting("A", "the paper's Figure 1", d=30, rank=3, depth=3, init_scale=1.0,
                             lr=1.0, reduction="mean", steps=6000, records=300)
        b = ParsimonySetting("B", "larger", d=200, rank=5, depth=3, init_scale=1.0, lr=0.1,
                             reduction="sum", steps=300, records=300, xscale="symlog")
        if self.quick:
            a, b = replace(a, steps=600, records=100), replace(b, steps=40, records=40)
        if self.steps is not None:
            a, b = replace(a, steps=self.steps), replace(b, steps=self.steps)
        return [a, b]

    def run(self, out_dir: str, progress: bool = True) -> dict:
        import deeplinear as dl
        from deeplinear import plotting

        os.makedirs(out_dir, exist_ok=True)
        n = dl.get_num_threads()
        print(f"law of parsimony (MATH.md §2): deeplinear {dl.__version__}, "
              f"{n} core thread{'s' if n > 1 else ''}, seed {self.seed}")
        start = time.perf_counter()
        rows: list[dict] = []
        files: list[str] = []
        can_plot = plotting.have_matplotlib()
        for st in self.settings():
            st_rows, st_files = self._run_setting(st, out_dir, progress, can_plot)
            rows += st_rows
            files += st_files
        passed = all(r["passed"] for r in rows)
        print()
        _print_checks(rows)
        print(f"all checks {'PASS' if passed else 'FAIL'}; total {time.perf_counter() - start:.1f} s")
        summary = {"experiment": "parsimony", "passed": passed, "checks": rows,
                   "settings": [st.__dict__ for st in self.settings()], "seed": self.seed,
                   "thresholds": {"residual": RESIDUAL_TOL, "rho": RHO_TOL, "angle": ANGLE_TOL,
                                  "scaled_angle": SCALED_ANGLE_TOL}}
        with open(os.path.join(out_dir, "checks.json"), "w") as fh:
            json.dump(summary, fh, indent=1)
        files.append("checks.json")
        print(f"wrote {out_dir}/: {', '.join(files)}")
        if not can_plot:
            print(f"no figure: matplotlib is not installed; get it with  {plotting.PLOT_HINT}")
        return summary

    def _run_setting(self, st: ParsimonySetting, out_dir: str, progress: bool,
                     can_plot: bool) -> tuple[list[dict], list[str]]:
        import deeplinear as dl
        from deeplinear import plotting
        from deeplinear.parsimony import invariant_basis, rho_schedule, structure_residual

        rng = np.random.default_rng(self.seed)
        phi = dl.problems.low_rank_target(st.d, st.rank, rng)
        phi /= np.linalg.norm(phi, 2)
        prob = dl.Factorization(phi, reduction=st.reduction)
        net = dl.DeepLinearNetwork(depth=st.depth, width=st.d, init="orthogonal",
                                   init_scale=st.init_scale, seed=self.seed)
        basis = invariant_basis(net, prob)
        every = st.track_every
        s_steps, s_res, s_rho = [], [], []

        def structure(step: int, net_: "dl.DeepLinearNetwork") -> None:
            out = structure_residual(net_, basis)
            s_steps.append(step)
            s_res.append(out["residual"])
            s_rho.append(out["rho"])

        print(f"\nsetting {st.name} ({st.label}): {st.describe()}; {st.steps} steps, exact SVD "
              f"of every layer every {every} steps, structure fit every {st.structure_every}")
        res = dl.train(net, prob, dl.GD(lr=st.lr), steps=st.steps, progress=progress,
                       track=dl.Tracking("full", every=every, basis=basis),
                       callback=structure, callback_every=st.structure_every)
        rho = rho_schedule(basis.init_scale, st.lr, st.depth, st.steps, reduction_constant=prob.c)
        tr = res.tracking
        steps = np.asarray(tr["steps"])
        sv = np.asarray(tr["singular_values"])
        n_bulk = st.d - 2 * st.rank

        # bulk: the d − 2r values of every layer closest to |ρ(t)| must all equal it
        dev = np.sort(np.abs(sv - np.abs(rho[steps])[:, None, None]), axis=-1)
        bulk_err = float(dev[..., n_bulk - 1].max()) if n_bulk > 0 else float("nan")
        s_steps_a = np.asarray(s_steps)
        s_res_a, s_rho_a = np.asarray(s_res), np.asarray(s_rho)
        rho_err = float(np.abs(s_rho_a - rho[s_steps_a][:, None]).max())
        angles = _largest_angles(tr, sv)
        angle_max = float(max(np.nanmax(a) if a.size else 0.0 for a in angles))
        scaled_max = _scaled_angle_max(angles, sv, st.rank)

        w1 = sv[-1, 0]
        print(f"  {res.status} after {res.n_steps} steps in {res.elapsed:.2f} s "
              f"({len(steps)} records): loss {res.train_loss[0]:.3e} -> {res.final_loss:.3e}")
        print(f"  W_1 at t={steps[-1]}: top {st.rank} singular values "
              + " ".join(f"{v:.4f}" for v in w1[:st.rank])
              + f"; bulk ({n_bulk} values) {np.median(w1):.6f}, predicted |ρ| {abs(rho[steps[-1]]):.6f}")

        rows = [
            _row("max structure residual ‖E_l‖/‖W_l‖ (fits over t)", st.name,
                 float(s_res_a.max()), RESIDUAL_TOL),
            _row("max |ρ_fit − ρ_pred| (structure fits over t)", st.name, rho_err, RHO_TOL),
            _row(f"max |s − |ρ_pred|| over the {n_bulk} bulk s.v. (all records)", st.name,
                 bulk_err, RHO_TOL),
            _row("max principal angle θ (right/left/align, all records)", st.name, angle_max,
                 ANGLE_TOL),
            _row("max θ·gap/s₁ (θ within the SVD's accuracy, all records)", st.name, scaled_max,
                 SCALED_ANGLE_TOL),
        ]
        res.meta["experiment"] = {"name": "parsimony", "setting": st.__dict__, "seed": self.seed,
                                  "track_every": every, "target_spectral_norm": 1.0}
        res.meta["checks"] = rows
        tr["rho_predicted"] = rho
        tr["structure_steps"] = s_steps_a
        tr["structure_residual"] = s_res_a
        tr["structure_rho"] = s_rho_a
        base = f"setting_{st.name}"
        res.save(os.path.join(out_dir, base + ".npz"))
        res.save_json(os.path.join(out_dir, base + ".json"))
        files = [base + ".npz", base + ".json"]
        if can_plot:
            plotting.plot_parsimony(
                os.path.join(out_dir, base + ".png"), steps=steps, singular_values=sv, rho=rho,
                rank=st.rank, angles_right=angles[0], angles_left=angles[1],
                angles_align=angles[2], xscale=st.xscale,
                title=f"Setting {st.name} ({st.label}): {st.describe()}")
            files.append(base + ".png")
        return rows, files


def _row(check: str, setting: str, value: float, threshold: float) -> dict:
    ok = bool(np.isfinite(value) and value <= threshold)
    return {"check": check, "setting": setting, "value": value, "threshold": threshold, "passed": ok}


def _print_checks(rows: list[dict]) -> None:
    w = max(len(r["check"]) for r in rows)
    print(f"{'check':<{w}}  {'setting':>7}  {'value':>9}  {'threshold':>9}  result")
    for r in rows:
        print(f"{r['check']:<{w}}  {r['setting']:>7}  {r['value']:9.2e}  {r['threshold']:9.0e}  "
              f"{'PASS' if r['passed'] else 'FAIL'}")


def _largest_angles(tr: dict, sv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest tracked principal angle per record: right (n, L), left (n, L), align (n, L−1).

    Where a layer's spectrum is fully degenerate (all singular values equal to 1e-12
    relative), its singular subspaces are not determined and the tracker's SVD picked an
    arbitrary one; the invariant basis is a valid pick there, so the angle is 0."""
    degenerate = (sv[..., 0] - sv[..., -1]) <= 1e-12 * sv[..., 0]
    right = np.array(tr["angles_right"][..., -1], dtype=float)
    left = np.array(tr["angles_left"][..., -1], dtype=float)
    align = np.array(tr["angles_align"][..., -1], dtype=float)
    right[degenerate] = 0.0
    left[degenerate] = 0.0
    if align.size:
        align[degenerate[:, :-1] | degenerate[:, 1:]] = 0.0
    return right, left, align


def _scaled_angle_max(angles: tuple[np.ndarray, ...], sv: np.ndarray, rank: int) -> float:
    """``max θ · gap / s₁`` over records and layers: θ the largest principal angle of a layer
    (right, left, and alignment with its neighbours), gap the distance between the 2r
    singular values the tracker takes as the learning ones (farthest from the median, as in
    the core) and the others.  An SVD's subspaces are accurate to ``O(u·s₁/gap)``."""
    n, L, d = sv.shape
    r2 = 2 * rank
    if r2 >= d:
        return 0.0
    from deeplinear.parsimony import learning_mask

    gap = np.empty((n, L))
    for i in range(n):
        for l in range(L):
            m = learning_mask(sv[i, l], r2)
            gap[i, l] = np.abs(sv[i, l][m][:, None] - sv[i, l][~m][None, :]).min() / sv[i, l, 0]
    right, left, align = angles
    worst = np.fmax(right, left) * gap
    if align.size:  # U_l vs V_{l+1}: limited by the smaller gap of the two layers
        worst = np.fmax(worst, np.pad(align * np.fmin(gap[:, :-1], gap[:, 1:]), ((0, 0), (0, 1))))
    return float(np.nanmax(worst)) if worst.size else 0.0


EXPERIMENTS = {"parsimony": ParsimonyExperiment, "factorization": FactorizationExperiment}
from .experiments_compression import EquivalenceExperiment, IterationTimeExperiment  # noqa: E402

EXPERIMENTS.update({"equivalence": EquivalenceExperiment, "iteration-time": IterationTimeExperiment})
DEFAULT_EXPERIMENT = "parsimony"

def _out_dir(base: str, name: str) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, f"{name}-{stamp}")
    i = 1
    while os.path.exists(path):
        path = os.path.join(base, f"{name}-{stamp}-{i}")
        i += 1
    return path


def main(argv: list[str | os.PathLike] | None = None) -> int:
    """Entry point of the ``deeplinear`` command (``argv`` default: ``sys.argv[1:]``); returns
    the exit status: 1 when a check of ``run parsimony`` fails, else 0."""
    parser = argparse.ArgumentParser(prog="deeplinear", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (default: %s)" % DEFAULT_EXPERIMENT)
    run.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT, choices=sorted(EXPERIMENTS),
                     help="parsimony: the paper's Figure 1 with checks (default); "
                          "factorization: one width-100 run")
    run.add_argument("--out", default="results", help="base folder of the results (default: results)")
    run.add_argument("--steps", type=int, default=None, help="override the step budget")
    run.add_argument("--seed", type=int, default=None, help="override the seed")
    run.add_argument("--quick", action="store_true", help="small step budgets (a smoke test)")
    run.add_argument("--threads", type=int, default=None,
                     help="threads of the core's matrix products for this run (default: 1 for "
                          "parsimony, the library's setting otherwise)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("info", help="print how the core was built (BLAS backend, SIMD, threads)")
    args = parser.parse_args(None if argv is None else [os.fspath(a) for a in argv])

    import deeplinear as dl

    if args.command == "info":
        print(json.dumps({"version": dl.__version__, "threads": dl.get_num_threads(),
                          **dl.build_info()}, indent=1))
        return 0
    if args.steps is not None and args.steps < 1:
        parser.error("--steps: must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads: must be >= 1")
    exp = EXPERIMENTS[args.experiment]()
    if args.quick:
        exp = exp.quick_version()
    overrides = {k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None}
    if overrides:
        exp = replace(exp, **overrides)
    out_dir = _out_dir(os.fspath(args.out), args.experiment)
    before = dl.get_num_threads()
    threads = args.threads if args.threads is not None else getattr(exp, "threads", None)
    if threads is not None:
        dl.set_num_threads(threads)
    try:
        summary = exp.run(out_dir, progress=not args.no_progress)
    finally:  # main() may be called in-process (tests): leave the setting as it was
        dl.set_num_threads(before)
    return 0 if summary.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
