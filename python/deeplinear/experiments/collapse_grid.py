"""The per-layer separation ratio over init scale × depth (the paper's ``grid_collapse``):
``deeplinear run collapse-grid``."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ._base import Check, ConfigError, Experiment, ExperimentResult, param, register
from .collapse import synthetic_run


@dataclass(frozen=True)
class _SyntheticSetting(Experiment):
    """The fields of the synthetic collapse setting shared by one run and the grid (not registered)."""

    activation: Literal["linear", "relu"] = param("linear", "hidden activation")
    classes: int = param(5, "classes K", low=2)
    per_class: int = param(10, "samples per class", low=1)
    lr: float = param(1.0, "GD step size η", low=0.0, low_open=True)
    tol: float = param(1e-6, "stop when the loss is below this (tested every 100 steps)", low=0.0)
    max_steps: int = param(30000, "step budget per network", low=1)
    seed: int = param(0, "seed of the data and the init", low=0)

    def setting(self) -> dict:
        """These fields' values (a grid's cells take them)."""
        return {f.name: getattr(self, f.name) for f in _SyntheticSetting.fields()}


@register
@dataclass(frozen=True)
class SeparationExperiment(_SyntheticSetting):
    """One network of the synthetic collapse setting (MATH.md §5; a cell of ``collapse-grid``):
    K classes × ``per_class`` samples (the columns of a Haar-orthogonal matrix), depth L, hidden
    widths N = K·``per_class``, orthogonal init ε, GD η, mean loss, until the loss is < ``tol``
    (tested every 100 steps); then ``D_l = tr Σ_W / tr Σ_B`` per layer and its log-linear fit.

    Metrics: ``ratio`` (the fitted per-layer decay ratio), ``r2``, ``steps``, ``final_loss``.
    Checks: the loss reached ``tol``; R² ≥ 0.999 (linear) or 0.98 (ReLU).
    Files: ``separation.npz`` / ``.json`` (``D`` per layer, the fit).
    """

    name = "separation"
    description = "one network's per-layer class separation ratio (a cell of collapse-grid)"
    threads = 1  # 50-wide layers: one thread is faster than two competing ones

    depth: int = param(8, "depth L", low=2)
    init_scale: float = param(0.5, "orthogonal init scale ε", low=0.0, low_open=True)

    def quick(self) -> "SeparationExperiment":
        return replace(self, depth=4)

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        act = None if self.activation == "linear" else self.activation
        run = synthetic_run(self.classes, self.per_class, self.depth, self.init_scale, self.lr, self.tol, 100,
                            self.max_steps, self.seed, act, progress)
        res.log(f"ε={self.init_scale:g} L={self.depth} ({self.activation}, seed {self.seed}): {run.steps} steps, "
                f"loss {run.result.final_loss:.1e}: ratio {run.fit.ratio:.4f}, R² {run.fit.r2:.6f}")
        res.save_arrays("separation", {"D": run.D}, {"ratio": run.fit.ratio, "r2": run.fit.r2, "steps": run.steps})
        res.metric("ratio", float(run.fit.ratio))
        res.metric("r2", float(run.fit.r2))
        res.metric("steps", int(run.steps))
        res.metric("final_loss", float(run.result.final_loss))
        res.check(Check.at_most("final loss", float(run.result.final_loss), self.tol),
                  Check.at_least("R² of the log-linear fit", float(run.fit.r2), 0.999 if act is None else 0.98))


@register
@dataclass(frozen=True)
class CollapseGridExperiment(_SyntheticSetting):
    """The fitted per-layer separation ratio of the synthetic collapse setting (MATH.md §5; see
    ``collapse``) over a grid of orthogonal init scales ε × depths L, as a heat map.

    The grid is a sweep (:func:`deeplinear.sweep`) of the ``separation`` experiment, one run per
    cell (K = 5 classes × 10 samples, 50 × 50 Haar-orthogonal inputs, widths 50, GD η = 1, mean
    loss, until the loss is < 1e-6 tested every 100 steps), on a local process pool of
    ``workers`` processes or on the Dask cluster at ``scheduler``.  The cells' sweep (every
    cell's files and row, and ``sweep.csv``) is kept *next to* the run folder, in
    ``collapse-grid-cells-<hash>/`` (:meth:`cells_dir`; the hash is the config's, without
    ``workers`` and ``scheduler``, which do not change the numbers): ``deeplinear run`` writes
    each call into a fresh ``OUT/collapse-grid-TIMESTAMP/``, so rerunning the same command with
    the same ``--out`` finds ``OUT/collapse-grid-cells-<hash>/`` again and only runs the cells
    that are missing (resume after a crash or Ctrl-C); from Python, ``run("dir/grid")`` keeps
    them in ``dir/collapse-grid-cells-<hash>/``.  Each cell runs on one thread, so a cell's
    numbers do not depend on the pool or the machine's other work.

    Measured (linear, seed 0): the ratio grows with the depth and with ε (ε = 0.5: 0.137,
    0.168, 0.185, 0.197 at L = 4, 6, 8, 10; ε = 1: 0.51 … 0.76), R² ≥ 0.99997 everywhere.
    Smaller inits separate more strongly per layer but train more slowly (ε = 0.25 at L ≥ 8
    stays on its plateau for > 20,000 steps, hence the default grid starts at 0.5).

    Checks: every cell ran, reached the loss threshold, the smallest R² ≥ 0.999 (linear; 0.98
    for ReLU), and the ratio increases along every row (ε) and column (L) of the grid (linear).
    Files: ``grid.npz`` / ``.json`` (ratio, R², steps, final loss per cell), ``grid.png``, and
    ``../collapse-grid-cells-<hash>/sweep.csv`` (the cells' sweep, outside the run folder).
    """

    name = "collapse-grid"
    description = "class separation ratio over init scale × depth (heat map), a sweep of `separation`"
    threads = 1

    init_scales: tuple[float, ...] = param((0.5, 0.7, 1.0), "orthogonal init scales ε (rows)")
    depths: tuple[int, ...] = param((4, 6, 8, 10), "depths L (columns)")
    workers: int = param(0, "local pool size (0: one process per core; ignored with a scheduler)", low=0)
    scheduler: str = param("", "address of a Dask scheduler to run the cells on (empty: a local pool)")

    def validate(self) -> None:
        if not self.init_scales or any(e <= 0 for e in self.init_scales):
            raise ConfigError("init_scales: must be a non-empty tuple of positive values")
        if not self.depths or any(L < 2 for L in self.depths):
            raise ConfigError("depths: must be a non-empty tuple of depths >= 2")

    def quick(self) -> "CollapseGridExperiment":
        return replace(self, init_scales=(0.5, 1.0), depths=(4, 6))

    def cells_dir(self, out: str) -> str:
        """The folder of the cells' sweep for a run into ``out``: ``collapse-grid-cells-<hash>``
        beside ``out`` (the config hash without ``workers`` and ``scheduler``), so that a rerun
        of the same config into another fresh folder of the same parent resumes it."""
        key = replace(self, workers=0, scheduler="").config_hash()
        return os.path.join(os.path.dirname(os.path.abspath(out)), f"{self.name}-cells-{key}")

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        import deeplinear as dl

        shape = (len(self.init_scales), len(self.depths))
        res.log(f"separation ratio over init scale × depth ({self.activation}, seed {self.seed}): "
                f"{shape[0] * shape[1]} runs of `separation`")
        cell = SeparationExperiment(**self.setting())
        cells = self.cells_dir(res.out)
        res.log(f"cells: {cells} (a rerun with the same config and --out resumes it)")
        sw = dl.sweep(SeparationExperiment.name, {"init_scale": self.init_scales, "depth": self.depths},
                      out=cells, base=cell, executor=self.scheduler or None,
                      workers=(self.workers or None) if not self.scheduler else None, progress=progress)
        if sw.interrupted:
            raise KeyboardInterrupt
        csv_rel = os.path.relpath(os.path.join(cells, "sweep.csv"), res.out)
        if csv_rel not in res.files:
            res.files.append(csv_rel)  # outside the run folder, so not through res.save_*
        rows = {(float(r["init_scale"]), int(r["depth"])): r for r in sw.rows}
        ratio, r2, steps, loss = (np.full(shape, np.nan) for _ in range(4))
        failed = []
        for i, eps in enumerate(self.init_scales):
            for j, L in enumerate(self.depths):
                row = rows.get((float(eps), int(L)))
                if row is None or row["status"] not in ("ok", "failed"):
                    failed.append(f"ε={eps:g} L={L}: {row['status'] if row else 'missing'}")
                    continue
                ratio[i, j], r2[i, j] = row["ratio"], row["r2"]
                steps[i, j], loss[i, j] = row["steps"], row["final_loss"]
                res.log(f"  ε={eps:<5g} L={L:<3d} {int(steps[i, j]):6d} steps, loss {loss[i, j]:.1e}: "
                        f"ratio {ratio[i, j]:.4f}, R² {r2[i, j]:.6f}")
        for f in failed:
            res.log(f"  {f}")
        res.save_arrays("grid", {"init_scales": np.asarray(self.init_scales), "depths": np.asarray(self.depths),
                                 "ratio": ratio, "r2": r2, "steps": steps, "final_loss": loss},
                        {"activation": self.activation, "ratio": ratio.tolist(), "r2": r2.tolist()})
        res.metric("min_r2", float(np.nanmin(r2)) if not np.all(np.isnan(r2)) else float("nan"))
        res.metric("max_final_loss", float(np.nanmax(loss)) if not np.all(np.isnan(loss)) else float("nan"))
        checks = [Check.at_most("cells that did not run (error or divergence)", len(failed), 0),
                  Check.at_most("largest final loss over the grid", float(np.max(loss)), self.tol),
                  Check.at_least("smallest R² over the grid", float(np.min(r2)),
                                 0.999 if self.activation == "linear" else 0.98)]
        if self.activation == "linear":
            bad = int(np.sum(~(np.diff(ratio, axis=0) > 0)) + np.sum(~(np.diff(ratio, axis=1) > 0)))
            checks.append(Check.at_most("cells where the ratio does not grow with ε or L", bad, 0))
        res.check(*checks)
        res.figure("grid", plot_grid, ratio=ratio, r2=r2, init_scales=self.init_scales, depths=self.depths,
                   title=f"per-layer separation ratio ({self.activation}, seed {self.seed})")


def plot_grid(path: str, *, ratio: np.ndarray, r2: np.ndarray, init_scales, depths, title: str = "") -> None:
    """Heat map of the ratio (rows ε, columns L), each cell annotated with ratio and R²."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.4 * len(depths) + 2.0, 1.0 * len(init_scales) + 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(ratio, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(depths)), [str(L) for L in depths])
    ax.set_yticks(range(len(init_scales)), [f"{e:g}" for e in init_scales])
    ax.set_xlabel("depth L")
    ax.set_ylabel("init scale ε")
    for i in range(ratio.shape[0]):
        for j in range(ratio.shape[1]):
            ax.text(j, i, f"{ratio[i, j]:.3f}\nR² {r2[i, j]:.4f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="ratio D_{l+1}/D_l (fit)")
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110)
