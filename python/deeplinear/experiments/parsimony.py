"""The law of parsimony (MATH.md §2; the paper's Figure 1), measured and checked:
``deeplinear run`` / ``deeplinear run parsimony``."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

import deeplinear as dl

from ._base import Check, Experiment, ExperimentResult, param, register

# Thresholds of the checks table.  An SVD determines a singular subspace only to about
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


@register
@dataclass(frozen=True)
class ParsimonyExperiment(Experiment):
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
    also get :func:`deeplinear.structure_residual` (through the training callback), and the
    scalar recursion :func:`deeplinear.rho_schedule` gives the predicted ρ(t).

    Checks over all records: the relative off-structure residual, ``|ρ_measured − ρ_predicted|``
    from the structure fit and from the ``d − 2r`` bulk singular values of every layer (they
    must all equal ``|ρ(t)|``), the largest tracked principal angle θ, and θ·gap/s₁ (an SVD
    fixes a singular subspace only to ``O(u·s₁/gap)``, and the gap shrinks to ~1e-6 where a
    block value crosses ρ in setting B, so θ reaches ~1e-9 there while θ·gap/s₁ stays ~1e-15).
    When a layer's spectrum is fully degenerate (all singular values equal, e.g.
    ``W_l(0) = ε O_l``) every subspace is a singular subspace and the SVD's pick is arbitrary:
    the invariant basis is then a valid choice and the angle is 0 (the tracker's raw values are
    kept in the ``.npz``).

    Files per setting: ``setting_A.npz`` / ``.json`` (the training :class:`deeplinear.Result`:
    the tracking arrays plus ``rho_predicted``, ``structure_steps``, ``structure_residual``,
    ``structure_rho``) and ``setting_A.png`` (with matplotlib).
    """

    name = "parsimony"
    description = "the law of parsimony, the paper's Figure 1: bulk singular values = |ρ(t)|, invariant subspaces"
    # One core thread: the layers are at most 200 wide and most of the time goes to the
    # per-record SVDs, so a second thread gains little, while threaded OpenBLAS slows down ~10x
    # whenever another process competes for the cores.
    threads = 1

    seed: int = param(0, "seed of the target and of the orthogonal init", low=0)
    steps_a: int = param(6000, "GD steps of setting A (the paper's Figure 1: d=30, r=3, mean loss)", low=1)
    records_a: int = param(300, "about this many exact-SVD records in setting A", low=1)
    steps_b: int = param(300, "GD steps of setting B (d=200, r=5, sum loss, lr 0.1)", low=1)
    records_b: int = param(300, "about this many exact-SVD records in setting B", low=1)
    width_b: int = param(200, "width d of setting B (> 2r = 10)", low=11)
    structure_records: int = param(50, "about this many structure_residual fits per setting", low=1)

    def quick(self) -> "ParsimonyExperiment":
        return replace(self, steps_a=600, records_a=100, steps_b=40, records_b=40)

    def settings(self) -> list[ParsimonySetting]:
        return [
            ParsimonySetting("A", "the paper's Figure 1", d=30, rank=3, depth=3, init_scale=1.0,
                             lr=1.0, reduction="mean", steps=self.steps_a, records=self.records_a,
                             structure_records=self.structure_records),
            ParsimonySetting("B", "larger", d=self.width_b, rank=5, depth=3, init_scale=1.0,
                             lr=0.1, reduction="sum", steps=self.steps_b, records=self.records_b,
                             structure_records=self.structure_records, xscale="symlog"),
        ]

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        n = dl.get_num_threads()
        res.log(f"law of parsimony (MATH.md §2): deeplinear {dl.__version__}, "
                f"{n} core thread{'s' if n > 1 else ''}, seed {self.seed}")
        for st in self.settings():
            self._run_setting(st, res, progress)
        res.save_json("settings", {"settings": [st.__dict__ for st in self.settings()],
                                   "thresholds": {"residual": RESIDUAL_TOL, "rho": RHO_TOL,
                                                  "angle": ANGLE_TOL,
                                                  "scaled_angle": SCALED_ANGLE_TOL}})

    def _run_setting(self, st: ParsimonySetting, res: ExperimentResult, progress: bool) -> None:
        from ..plotting import plot_parsimony

        rng = np.random.default_rng(self.seed)
        phi = dl.problems.low_rank_target(st.d, st.rank, rng)
        phi /= np.linalg.norm(phi, 2)
        prob = dl.Factorization(phi, reduction=st.reduction)
        net = dl.DeepLinearNetwork(depth=st.depth, width=st.d, init="orthogonal",
                                   init_scale=st.init_scale, seed=self.seed)
        basis = dl.invariant_basis(net, prob)
        every = st.track_every
        s_steps, s_res, s_rho = [], [], []

        def structure(step: int, net_: dl.DeepLinearNetwork) -> None:
            out = dl.structure_residual(net_, basis)
            s_steps.append(step)
            s_res.append(out["residual"])
            s_rho.append(out["rho"])

        res.log(f"\nsetting {st.name} ({st.label}): {st.describe()}; {st.steps} steps, exact SVD "
                f"of every layer every {every} steps, structure fit every {st.structure_every}")
        tr_res = dl.train(net, prob, dl.GD(lr=st.lr), steps=st.steps, progress=progress,
                          track="full", track_every=every, basis=basis,
                          callback=structure, callback_every=st.structure_every)
        rho = dl.rho_schedule(basis.init_scale, st.lr, st.depth, st.steps, reduction_constant=prob.c)
        tr = tr_res.tracking
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
        res.log(f"  {tr_res.status} after {tr_res.n_steps} steps in {tr_res.elapsed:.2f} s "
                f"({len(steps)} records): loss {tr_res.train_loss[0]:.3e} -> {tr_res.final_loss:.3e}")
        res.log(f"  W_1 at t={steps[-1]}: top {st.rank} singular values "
                + " ".join(f"{v:.4f}" for v in w1[:st.rank])
                + f"; bulk ({n_bulk} values) {np.median(w1):.6f}, predicted |ρ| {abs(rho[steps[-1]]):.6f}")

        s = st.name
        checks = [
            Check.at_most("max structure residual ‖E_l‖/‖W_l‖ (fits over t)", float(s_res_a.max()),
                          RESIDUAL_TOL, setting=s),
            Check.at_most("max |ρ_fit − ρ_pred| (structure fits over t)", rho_err, RHO_TOL, setting=s),
            Check.at_most(f"max |s − |ρ_pred|| over the {n_bulk} bulk s.v. (all records)", bulk_err,
                          RHO_TOL, setting=s),
            Check.at_most("max principal angle θ (right/left/align, all records)", angle_max,
                          ANGLE_TOL, setting=s),
            Check.at_most("max θ·gap/s₁ (θ within the SVD's accuracy, all records)", scaled_max,
                          SCALED_ANGLE_TOL, setting=s),
        ]
        res.check(*checks)
        for key, value in (("residual", float(s_res_a.max())), ("rho_error", rho_err),
                           ("bulk_error", bulk_err), ("angle", angle_max)):
            res.metric(f"{s}_{key}", value)
        tr["rho_predicted"] = rho
        tr["structure_steps"] = s_steps_a
        tr["structure_residual"] = s_res_a
        tr["structure_rho"] = s_rho_a
        base = f"setting_{s}"
        res.save_training(base, tr_res, extra={
            "experiment": {"name": self.name, "setting": st.__dict__, "seed": self.seed,
                           "track_every": every, "target_spectral_norm": 1.0},
            "checks": [c.to_dict() for c in checks]})
        res.figure(base, plot_parsimony, steps=steps, singular_values=sv, rho=rho, rank=st.rank,
                   angles_right=angles[0], angles_left=angles[1], angles_align=angles[2],
                   xscale=st.xscale, title=f"Setting {s} ({st.label}): {st.describe()}")


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
    median = np.sort(sv, axis=-1)[..., d // 2]
    order = np.argsort(-np.abs(sv * sv - median[..., None] ** 2), axis=-1, kind="stable")
    sel = np.take_along_axis(sv, order[..., :r2], axis=-1)
    rest = np.take_along_axis(sv, order[..., r2:], axis=-1)
    gap = np.abs(sel[..., :, None] - rest[..., None, :]).min(axis=(-1, -2)) / sv[..., 0]  # (n, L)
    right, left, align = angles
    worst = np.fmax(right, left) * gap
    if align.size:  # U_l vs V_{l+1}: limited by the smaller gap of the two layers
        worst = np.fmax(worst, np.pad(align * np.fmin(gap[:, :-1], gap[:, 1:]), ((0, 0), (0, 1))))
    return float(np.nanmax(worst)) if worst.size else 0.0
