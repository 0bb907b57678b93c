"""Progressive separation of classes across layers (MATH.md §5; the paper's §4 "collapse"):
``deeplinear run collapse``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

import deeplinear as dl

from ._base import Check, Experiment, ExperimentResult, param, register

# MATH.md §5, measured over seeds 0–4: linear ratio 0.185–0.188 with 1 − R² ≤ 6e-5; ReLU ratio
# 0.069–0.093 with R² 0.991–0.995 (other seeds: down to 0.978, so the ReLU threshold is 0.98).
LINEAR_RATIO = (0.185, 0.188)
LINEAR_R2 = 0.999
RELU_R2 = 0.98


@dataclass
class SeparationRun:
    """One trained network's class separation: ``D_l`` per layer and its log-linear fit."""

    D: np.ndarray
    fit: dl.DecayFit
    result: dl.Result
    steps: int


def train_until(net: dl.DeepLinearNetwork, prob: dl.Problem, lr: float, tol: float, check_every: int,
                max_steps: int, progress: bool = False) -> tuple[dl.Result, int]:
    """GD until the loss is below ``tol`` at a multiple of ``check_every`` steps (the reference's
    stopping rule, MATH.md §5) or ``max_steps``.  GD keeps no state between calls, so the run is
    the same as one call; returns the last call's result (with the accuracies) and the steps."""
    steps = 0
    while True:
        n = min(check_every, max_steps - steps)
        res = dl.train(net, prob, dl.GD(lr=lr), n, progress=progress, record_every=n)
        steps += res.n_steps
        if res.status == "diverged" or res.final_loss < tol or steps >= max_steps:
            return res, steps


def separation(net: dl.DeepLinearNetwork, prob: dl.Classification, res: dl.Result, steps: int) -> SeparationRun:
    D = dl.class_separation(net.features(prob.X), prob.labels)
    return SeparationRun(D=D, fit=dl.decay_fit(D), result=res, steps=steps)


def synthetic_run(classes: int, per_class: int, depth: int, init_scale: float, lr: float, tol: float,
                  check_every: int, max_steps: int, seed: int, activation: Optional[str],
                  progress: bool = False) -> SeparationRun:
    """The paper's synthetic setting (MATH.md §5): ``N = classes·per_class`` samples, the columns
    of an ``N × N`` Haar-orthogonal matrix; hidden widths N, output ``classes``; orthogonal init
    ``ε``; GD, mean loss ``c = 1/(K·N)``, until the loss is below ``tol``."""
    prob = dl.problems.orthogonal_classes(classes, per_class, seed=seed)
    n = classes * per_class
    net = dl.DeepLinearNetwork(depth, dims=[n] * depth + [classes], init="orthogonal",
                               init_scale=init_scale, seed=seed, activation=activation)
    res, steps = train_until(net, prob, lr, tol, check_every, max_steps, progress)
    return separation(net, prob, res, steps)


def digits_problem(test_fraction: float, seed: int) -> dl.Classification:
    """scikit-learn's bundled handwritten digits (1797 samples × 64 pixels, 10 classes, no
    download): a random split (``default_rng(seed)``), every pixel standardized with the
    training split's mean and standard deviation (constant pixels: centred only)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    X, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean = X[train].mean(axis=0)
    std = X[train].std(axis=0)
    std[std == 0] = 1.0
    Z = (X - mean) / std
    return dl.Classification(np.ascontiguousarray(Z[train].T), y[train],
                             test=(np.ascontiguousarray(Z[test].T), y[test]))


@register
@dataclass(frozen=True)
class CollapseExperiment(Experiment):
    """Progressive separation of classes across layers (MATH.md §5; the paper's §4).

    A depth-L network, linear and ReLU (after every hidden layer), trained by GD on one-hot
    targets with the squared loss; for every layer ``l = 0 … L−1`` (``H_0 = X``, the output
    layer excluded) the within/between class ratio ``D_l = tr Σ_W / tr Σ_B`` of the training
    features (:func:`deeplinear.class_separation`), and the fit ``log D_l ≈ a + l log q``
    (:func:`deeplinear.decay_fit`): ``q`` the per-layer decay ratio, R² how geometric it is.

    * **Synthetic** (the paper's setting): K = 5 classes × 10 samples, the columns of a 50 × 50
      Haar-orthogonal matrix, hidden widths 50, depth 8, orthogonal init ε = 0.5, η = 1, mean
      loss ``c = 1/(K·N)``, until the loss is < 1e-6 (tested every 100 steps).  Checks
      (MATH.md §5, measured over seeds 0–4): linear ratio in 0.185–0.188 with R² ≥ 0.999; ReLU
      ratio below the linear one with R² ≥ 0.98 (seed-dependent: 0.991–0.995 on seeds 0–4, as
      low as 0.978 on others).
    * **Digits** (``sklearn.datasets.load_digits``, bundled with scikit-learn): 64 standardized
      pixels, 10 classes, a random 75/25 train/test split; hidden widths ``digits_width``, the
      same depth, orthogonal init ``digits_init_scale``, GD with ``digits_lr`` on the mean loss
      for ``digits_steps`` steps (or until ``tol``).  The linear network cannot fit the digits
      (loss floor ≈ 2e-2) and does not separate them progressively (seed 0: ratio 1.03,
      R² 0.46, reported, not checked); the ReLU network does (ratio 0.63, R² 0.97, test
      accuracy 0.969).  Checks: the ReLU fit's R² ≥ 0.9, its ratio below the linear one, test
      accuracy ≥ 0.9 (ReLU) and ≥ 0.85 (linear: 0.938).

    Files: ``synthetic.npz`` / ``digits.npz`` (``D`` per network, layers, loss histories) with
    ``.json`` (fits, steps, accuracies) and ``collapse.png`` (``log D_l`` against ``l``).
    """

    name = "collapse"
    description = "progressive class separation: D_l = tr Σ_W / tr Σ_B decays geometrically in l (linear, ReLU)"
    requires = ("sklearn",)
    threads = 1  # 50-wide layers: one thread is faster than two competing ones

    depth: int = param(8, "depth L of every network", low=2)
    seed: int = param(0, "seed of the data, the split and the init (MATH.md §5 measures 0-4)", low=0)
    classes: int = param(5, "synthetic: classes K", low=2)
    per_class: int = param(10, "synthetic: samples per class", low=1)
    init_scale: float = param(0.5, "synthetic: orthogonal init scale ε", low=0.0, low_open=True)
    lr: float = param(1.0, "synthetic: GD step size η", low=0.0, low_open=True)
    tol: float = param(1e-6, "stop when the loss is below this (tested every check_every steps)", low=0.0)
    check_every: int = param(100, "steps between loss tests", low=1)
    max_steps: int = param(30000, "synthetic: step budget per network", low=1)
    digits: bool = param(True, "also run scikit-learn's handwritten digits")
    digits_width: int = param(32, "digits: hidden width", low=1)
    digits_init_scale: float = param(1.0, "digits: orthogonal init scale", low=0.0, low_open=True)
    digits_lr: float = param(1.0, "digits: GD step size (mean loss, c = 1/(10 n); 2 diverges)", low=0.0, low_open=True)
    digits_steps: int = param(1500, "digits: step budget per network", low=1)
    test_fraction: float = param(0.25, "digits: fraction of the samples held out", low=0.05, high=0.9)

    def quick(self) -> "CollapseExperiment":
        return replace(self, digits_steps=500)

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        res.log(f"class separation (MATH.md §5): depth {self.depth}, seed {self.seed}")
        curves = {}
        syn = {}
        for act in (None, "relu"):
            run = synthetic_run(self.classes, self.per_class, self.depth, self.init_scale, self.lr,
                                self.tol, self.check_every, self.max_steps, self.seed, act, progress)
            syn[act or "linear"] = run
            curves[f"synthetic, {act or 'linear'}"] = run.D
        self._report("synthetic", syn, res)
        lin, relu = syn["linear"], syn["relu"]
        res.check(
            Check.at_least("linear ratio (MATH.md §5: 0.185-0.188)", lin.fit.ratio, LINEAR_RATIO[0], setting="synthetic"),
            Check.at_most("linear ratio (MATH.md §5: 0.185-0.188)", lin.fit.ratio, LINEAR_RATIO[1], setting="synthetic"),
            Check.at_least("linear R²", lin.fit.r2, LINEAR_R2, setting="synthetic"),
            Check.at_most("ReLU ratio (below the linear one)", relu.fit.ratio, lin.fit.ratio, setting="synthetic"),
            Check.at_least("ReLU R²", relu.fit.r2, RELU_R2, setting="synthetic"),
            Check.at_most("final loss, both networks", max(lin.result.final_loss, relu.result.final_loss),
                          self.tol, setting="synthetic"))
        if self.digits:
            prob = digits_problem(self.test_fraction, self.seed)
            dig = {}
            for act in (None, "relu"):
                d0 = prob.X.shape[0]
                net = dl.DeepLinearNetwork(self.depth, dims=[d0] + [self.digits_width] * (self.depth - 1) + [prob.K],
                                           init="orthogonal", init_scale=self.digits_init_scale,
                                           seed=self.seed, activation=act)
                r, steps = train_until(net, prob, self.digits_lr, self.tol, self.check_every,
                                       self.digits_steps, progress)
                dig[act or "linear"] = separation(net, prob, r, steps)
                curves[f"digits, {act or 'linear'}"] = dig[act or "linear"].D
            self._report("digits", dig, res)
            lin, relu = dig["linear"], dig["relu"]
            res.check(
                Check.at_least("ReLU R²", relu.fit.r2, 0.9, setting="digits"),
                Check.at_most("ReLU ratio (below the linear one)", relu.fit.ratio, lin.fit.ratio, setting="digits"),
                Check.at_least("ReLU test accuracy", relu.result.test_accuracy, 0.9, setting="digits"),
                Check.at_least("linear test accuracy", lin.result.test_accuracy, 0.85, setting="digits"))
        res.figure("collapse", plot_collapse, curves=curves,
                   title=f"class separation across layers, depth {self.depth}, seed {self.seed}")

    def _report(self, setting: str, runs: dict, res: ExperimentResult) -> None:
        arrays, info = {}, {}
        for key, run in runs.items():
            r = run.result
            res.log(f"  {setting}, {key}: {run.steps} steps, loss {r.final_loss:.3e}, ratio "
                    f"{run.fit.ratio:.4f}, R² {run.fit.r2:.6f}, train accuracy {r.train_accuracy:.4f}"
                    + ("" if r.test_accuracy is None else f", test accuracy {r.test_accuracy:.4f}"))
            arrays[f"{key}_D"] = run.D
            info[key] = {"ratio": run.fit.ratio, "r2": run.fit.r2, "steps": run.steps,
                         "final_loss": r.final_loss, "status": r.status,
                         "train_accuracy": r.train_accuracy, "test_accuracy": r.test_accuracy}
            res.metric(f"{setting}_{key}_ratio", run.fit.ratio)
            res.metric(f"{setting}_{key}_r2", run.fit.r2)
            if r.test_accuracy is not None:
                res.metric(f"{setting}_{key}_test_accuracy", r.test_accuracy)
        arrays["layers"] = np.arange(len(next(iter(runs.values())).D))
        res.save_arrays(setting, arrays, info)


def plot_collapse(path: str, *, curves: dict, title: str = "") -> None:
    """``log10 D_l`` against the layer ``l`` for every curve, with its fitted line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, D in curves.items():
        layers = np.arange(len(D))
        fit = dl.decay_fit(D)
        line, = ax.plot(layers, np.log10(D), "o", label=f"{label}: ratio {fit.ratio:.3f}, R² {fit.r2:.4f}")
        ax.plot(layers, (fit.intercept + fit.slope * layers) / np.log(10), "-", color=line.get_color(), lw=1)
    ax.set_xlabel("layer l")
    ax.set_ylabel("log10 D_l = log10 tr Σ_W / tr Σ_B")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
