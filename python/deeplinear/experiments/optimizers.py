"""Which optimizers keep the invariant structure (MATH.md §1-§2; the paper's ``momentum``
figure): ``deeplinear run optimizers``."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

import deeplinear as dl

from ._base import Check, ConfigError, Experiment, ExperimentResult, param, register

KEEP_TOL = 1e-12     # GD, heavy ball, Nesterov: the structure residual stays at round-off
BREAK_FACTOR = 1e4   # Adam's residual is at least this many times the largest of the others
TRAINED_MAX = 1.0    # every optimizer's final loss / initial loss: the run trained, not blew up


def structure_history(net: dl.DeepLinearNetwork, prob: dl.Problem, opt: dl.Optimizer, steps: int,
                      every: int, reference: dl.InvariantBasis, progress: bool = False,
                      **train_kw) -> tuple[dl.Result, np.ndarray, np.ndarray]:
    """Train ``net`` while fitting :func:`deeplinear.structure_residual` (in the basis
    ``reference``) every ``every`` steps and at the last step reached:
    ``(result, record steps, max over layers of ‖E_l‖/‖W_l‖ per record)``; ``train_kw`` go to
    :func:`deeplinear.train` (e.g. tracking).

    A run that stops early (it diverged: :func:`deeplinear.train` calls no callback at its
    end then) still gets a record at the step it reached, so the records cover the trajectory
    actually trained; weights that are no longer finite (or whose norms overflow) give a NaN
    residual."""
    steps_, resid = [], []

    def record(step: int, n: dl.DeepLinearNetwork) -> None:
        steps_.append(step)
        if not all(np.isfinite(w).all() for w in n.weights):
            resid.append(float("nan"))
            return
        with np.errstate(over="ignore", invalid="ignore"):  # blown-up weights: norms overflow
            value = float(np.max(dl.structure_residual(n, reference)["residual"]))
        resid.append(value if np.isfinite(value) else float("nan"))

    res = dl.train(net, prob, opt, steps, progress=progress, callback=record, callback_every=every, **train_kw)
    if not steps_ or steps_[-1] != res.n_steps:
        record(res.n_steps, net)
    return res, np.asarray(steps_), np.asarray(resid)


@register
@dataclass(frozen=True)
class OptimizersExperiment(Experiment):
    """GD, heavy-ball momentum, Nesterov momentum and Adam on one deep matrix factorization
    (the paper's ``momentum`` figure; MATH.md §1: momentum keeps the block structure of §2,
    Adam's element-wise scaling breaks it).

    Setting: ``d × d`` Gaussian target of rank r rescaled to ``‖Φ‖₂ = 1``, sum loss, depth L,
    orthogonal init ``ε``; the same initial weights for every optimizer.  Every ``every`` steps
    :func:`deeplinear.structure_residual` fits each layer to ``U_l diag(W̃_l, ρ I) V_lᵀ`` in the
    invariant basis of the init (:func:`deeplinear.invariant_basis`) and reports the relative
    off-structure part ``‖E_l‖_F / ‖W_l‖_F``.

    Checks: every optimizer trained (final loss ≤ initial loss: a run that blows up, even to
    finite losses, fails); the largest residual over the trajectory trained (every ``every``
    steps and the last step) and the layers is ≤ 1e-12 for GD, heavy ball and Nesterov
    (round-off), and Adam's is at least 1e4 times the largest of theirs (it is ~0.7 here: the
    structure is gone).  A run that diverges (non-finite loss or weights) marks the experiment
    ``"diverged"`` and its residual check fails: the trajectory the check is about does not
    exist.  Files: ``optimizers.npz`` / ``.json`` (losses and residuals per optimizer),
    ``gd``, ``heavy_ball``, ``nesterov``, ``adam`` (``.npz`` / ``.json``: each training
    :class:`deeplinear.Result`), ``optimizers.png`` (loss curves and residuals over time).
    """

    name = "optimizers"
    description = "GD, heavy ball, Nesterov keep the invariant structure to round-off; Adam breaks it"
    threads = 1

    d: int = param(30, "width d (square layers)", low=2)
    rank: int = param(3, "rank r of the target (2r <= d)", low=1)
    depth: int = param(3, "depth L", low=2)
    init_scale: float = param(1.0, "orthogonal init scale ε", low=0.0, low_open=True)
    lr: float = param(0.1, "GD step size (momentum: lr·(1 − μ), the same long-run step)", low=0.0, low_open=True)
    momentum: float = param(0.9, "μ of heavy ball and Nesterov", low=0.0, high=0.999)
    adam_lr: float = param(1e-2, "Adam step size", low=0.0, low_open=True)
    steps: int = param(2000, "steps per optimizer", low=1)
    every: int = param(20, "steps between structure fits", low=1)
    seed: int = param(0, "seed of the target and the init", low=0)

    def validate(self) -> None:
        if 2 * self.rank > self.d:
            raise ConfigError(f"rank: 2r = {2 * self.rank} must be <= d = {self.d}")

    def quick(self) -> "OptimizersExperiment":
        return replace(self, d=12, rank=2, steps=400, every=40)

    def optimizers(self) -> dict:
        slow = self.lr * (1.0 - self.momentum)
        return {"GD": dl.GD(lr=self.lr),
                "heavy ball": dl.GD(lr=slow, momentum=self.momentum),
                "Nesterov": dl.GD(lr=slow, momentum=self.momentum, nesterov=True),
                "Adam": dl.Adam(lr=self.adam_lr)}

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        rng = np.random.default_rng(self.seed)
        phi = dl.problems.low_rank_target(self.d, self.rank, rng)
        phi /= np.linalg.norm(phi, 2)
        prob = dl.Factorization(phi, reduction="sum")
        init = dl.DeepLinearNetwork(self.depth, self.d, init="orthogonal", init_scale=self.init_scale, seed=self.seed)
        basis = dl.invariant_basis(init, prob)
        res.log(f"optimizers and the invariant structure: d={self.d}, r={self.rank}, L={self.depth}, "
                f"ε={self.init_scale:g}, sum loss, ‖Φ‖₂ = 1, {self.steps} steps")
        arrays, info, curves = {}, {}, {}
        worst, trained, runs = {}, {}, {}
        for name, opt in self.optimizers().items():
            net = init.copy()
            r, st, resid = structure_history(net, prob, opt, self.steps, self.every, basis, progress)
            key = name.lower().replace(" ", "_")
            arrays[f"{key}_loss"] = r.train_loss
            arrays[f"{key}_structure_steps"] = st
            arrays[f"{key}_structure_residual"] = resid
            # NaN (a failed check) when a record has no finite residual or the run diverged
            worst[name] = float(resid.max()) if r.status != "diverged" else float("nan")
            trained[name] = float(r.final_loss / r.train_loss[0])
            runs[name] = r
            info[name] = {"optimizer": opt.describe(), "final_loss": r.final_loss, "status": r.status,
                          "steps": r.n_steps, "max_structure_residual": worst[name]}
            curves[name] = (r.steps, r.train_loss, st, resid)
            res.metric(f"{key}_max_residual", worst[name])
            res.log(f"  {name:<10} loss {r.train_loss[0]:.3e} -> {r.final_loss:.3e} ({r.status} after "
                    f"{r.n_steps} steps), max structure residual {worst[name]:.2e}")
        for name, r in runs.items():  # a "diverged" status marks the experiment diverged
            key = name.lower().replace(" ", "_")
            res.save_training(key, r, extra={"max_structure_residual": worst[name]})
        # the largest of the others (NaN when none of them has a trajectory to compare with)
        keep = max((worst[n] for n in ("GD", "heavy ball", "Nesterov") if np.isfinite(worst[n])),
                   default=float("nan"))
        res.check(*(Check.at_most(f"final loss / initial loss, {n}", trained[n], TRAINED_MAX,
                                  note=f"{runs[n].status} after {runs[n].n_steps} steps")
                    for n in runs),
                  *(Check.at_most(f"max structure residual, {n}", worst[n], KEEP_TOL,
                                  note=f"{len(arrays[n.lower().replace(' ', '_') + '_structure_steps'])} "
                                       f"records, steps 0..{runs[n].n_steps}"
                                       + (", diverged" if runs[n].status == "diverged" else ""))
                    for n in ("GD", "heavy ball", "Nesterov")),
                  Check.at_least("Adam's max residual / the largest of the others",
                                 worst["Adam"] / max(keep, 1e-300) if np.isfinite(keep) else float("nan"),
                                 BREAK_FACTOR, note=f"Adam {worst['Adam']:.2e}"))
        res.save_arrays("optimizers", arrays, info)
        res.figure("optimizers", plot_optimizers, curves=curves,
                   title=f"d={self.d}, r={self.rank}, L={self.depth}, ε={self.init_scale:g}")


def plot_optimizers(path: str, *, curves: dict, title: str = "") -> None:
    """Loss (left) and structure residual (right) against the step, one line per optimizer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_res = fig.subplots(1, 2)
    for name, (steps, loss, st, resid) in curves.items():
        ax_loss.semilogy(steps, loss, label=name)
        ax_res.semilogy(st, np.maximum(resid, 1e-17), label=name)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_res.set_xlabel("step")
    ax_res.set_ylabel("max_l ‖E_l‖ / ‖W_l‖ (off-structure part)")
    ax_loss.legend()
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
