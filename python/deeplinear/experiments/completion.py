"""Deep matrix completion with the compressed network (MATH.md §4, the paper's §3.2):
``completion`` (wide vs compressed, the α sweep), ``depth`` (test error against width, depth 2
vs 3) and ``completion-image`` (a real image beside SoftImpute).

The targets here are ``Φ = A Bᵀ / √(r d)`` (A, B standard normal): entries of variance 1/d and
singular values about ``√(d/r)``, so the mean-reduction steps scale like the paper's.  Step sizes
are chosen below the stability limit of the balanced solution, ``η c p L σ₁^{2(L−1)/L} < 2``
(p the observed fraction).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np

import deeplinear as dl

from ._base import Check, ConfigError, Experiment, ExperimentResult, param, register


def low_rank(d: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """``Φ = A Bᵀ / √(r d)``: entries of variance 1/d, singular values ≈ √(d/r)."""
    return dl.problems.low_rank_target(d, rank, rng) / np.sqrt(d)


def paper_target(d: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """The reference code's completion target (``generate_data`` of the paper's code): the SVD
    ``G = P diag(s) Qᵀ`` of a d × d standard normal G, kept at the r indices
    ``0, d/(2r), 2d/(2r), …`` (below d/2): singular values of different magnitude, the largest
    ≈ 2√d (63 at d = 1000), whose scale sets the plateau's length at the paper's η."""
    P, s, Qt = np.linalg.svd(rng.standard_normal((d, d)))
    idx = np.arange(0, d / 2, d / (2 * rank)).astype(int)[:rank]
    return (P[:, idx] * s[idx]) @ Qt[idx]


def soft_impute(rows, cols, vals, shape, *, shrinkage: Optional[float] = None, max_iters: int = 100,
                convergence: float = 1e-3, max_rank: Optional[int] = None, seed: int = 0):
    """SoftImpute (Mazumder, Hastie, Tibshirani 2010): ``Z ← S_λ(P_Ω(X) + P_Ω⊥(Z))`` until
    ``‖Z_new − Z‖²/‖Z‖² < convergence``, ``S_λ`` soft-thresholding the singular values by λ.
    Defaults as fancyimpute's: zero fill, ``λ = σ₁(P_Ω(X))/50``, 100 iterations, threshold
    1e-3; a full SVD, or with ``max_rank`` the top ``max_rank`` triplets by a randomized SVD
    (4 power steps).  Returns ``(Z, iterations)``, Z the low-rank estimate."""
    rng = np.random.default_rng(seed)
    X = np.zeros(shape)
    X[rows, cols] = vals

    def svd(a):
        if max_rank is None:
            return np.linalg.svd(a, full_matrices=False)
        q, _ = np.linalg.qr(a @ rng.standard_normal((shape[1], max_rank + 10)))
        for _ in range(4):
            q, _ = np.linalg.qr(a @ (a.T @ q))
        u, s, vt = np.linalg.svd(q.T @ a, full_matrices=False)
        return q @ u, s, vt

    if shrinkage is None:
        shrinkage = svd(X)[1][0] / 50.0
    Z = X.copy()
    low = Z
    it = 0
    for it in range(1, max_iters + 1):
        u, s, vt = svd(Z)
        s = np.maximum(s - shrinkage, 0.0)
        k = int(np.count_nonzero(s))
        low = (u[:, :k] * s[:k]) @ vt[:k]
        change = float(np.sum((low - Z) ** 2) / max(float(np.sum(Z * Z)), 1e-300))
        Z = low.copy()
        Z[rows, cols] = vals
        if change < convergence:
            break
    return low, it


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@register
@dataclass(frozen=True)
class CompletionExperiment(Experiment):
    """Wide vs compressed deep matrix completion, and the discrepant learning rate α.

    The paper's ``equiv_traj_mc`` setting (the full config): d = 1000, the reference code's
    rank-5 target (:func:`paper_target`), 20% of its entries observed uniformly, depth L = 3, orthogonal init
    ``ε O_l`` with ε = 1e-3, GD with η = 5e3 and the mean reduction (c = 1/d²).  The wide
    network and the compressed network ``U W̃_L ⋯ W̃_1 Vᵀ`` (``init="wide"``: the paper's
    gradient-based basis of the same wide init, so both start from the same end-to-end matrix)
    are trained side by side (the wide network for ``steps``, about 40 minutes at d = 1000 on
    2 cores); then the compressed one with α ∈ ``alphas`` = 0, 0.01, 0.1, 1 for
    ``compressed_factor`` times as many steps (a compressed step costs milliseconds).
    ``quick()`` is d = 60, r = 2, 40% observed, ε = 0.1, η = 300, 1500 steps, the target
    ``Φ = A Bᵀ/√(r d)``.

    Checks (the measured facts of MATH.md §4; each compares with the α = 0.01 run, so ``alphas``
    must include 0.01, and α = 0 and α = 1 add theirs when in ``alphas``): the compressed
    network at α = 0.01, given
    ``compressed_factor`` = 2 times the wide network's steps (it needs 1.06–1.9× the wide
    network's steps to match its test error), reaches the wide network's final test error
    within 10%; α = 0 (U, V frozen at the initial estimate) stalls at a test error at least 10×
    α = 0.01's; α = 1 fails at this η (α·η is too large a step for U, V): its best test error
    over the run (before it diverges) is at least 10× α = 0.01's final one.

    Measured at the full config (seed 0, the compressed runs, 50,000 steps): α = 0.01 reaches a
    train loss of 1e-9 by step 40,000 and a test RMSE of 1.3e-11; α = 0.1 by step 39,000, the
    same 1.3e-11; α = 0 stalls at a test RMSE of 0.246; α = 1 diverges at step 22,952 (its best
    test RMSE 0.865).  Hence ``steps`` = 40,000 for the wide network, so that the comparison
    with it is at convergence (MATH.md §4: the compressed network needs 1.06–1.9× its steps).  Files: ``wide``, ``alpha_<α>``
    (training results with train and test error), ``completion.png``.
    """

    name = "completion"
    description = "deep matrix completion: wide vs compressed (U, V trained at α·η), α sweep"

    d: int = param(1000, "matrix size d", low=4)
    rank: int = param(5, "rank r of the target", low=1)
    observed: float = param(0.2, "observed fraction of the entries", low=0.0, high=1.0)
    depth: int = param(3, "depth L", low=2)
    init_scale: float = param(1e-3, "init scale ε", low=0.0, low_open=True)
    lr: float = param(5e3, "step size η (mean reduction, c = 1/d²)", low=0.0, low_open=True)
    steps: int = param(40000, "steps of the wide network", low=1)
    record_every: int = param(100, "record the losses every this many steps", low=1)
    compressed_factor: int = param(2, "the compressed runs take this many times the wide network's steps", low=1)
    alphas: tuple[float, ...] = param((0.0, 0.01, 0.1, 1.0), "α of the sweep")
    seed: int = param(0, "seed of the target, mask and init", low=0)
    target: Literal["paper", "gaussian"] = param(
        "paper", "target: the reference code's (paper_target) or Φ = A Bᵀ/√(r d) (low_rank)")

    def quick(self) -> "CompletionExperiment":
        return replace(self, d=60, rank=2, observed=0.4, init_scale=0.1, lr=300.0, steps=1500,
                       record_every=25, target="gaussian")

    def validate(self) -> None:
        # every check compares with α = 0.01: without it the run would end with no checks at all
        if 0.01 not in self.alphas:
            raise ConfigError(f"alphas: must include 0.01 (every check compares with the α = 0.01 run), "
                              f"got {self.alphas!r}")
        if any(not a >= 0 for a in self.alphas):
            raise ConfigError(f"alphas: must be >= 0, got {self.alphas!r}")

    def for_report(self) -> "CompletionExperiment":
        """The quick config: the paper's setting (the default) takes over an hour on 2 cores,
        and at intermediate sizes (d = 300, 8000 steps) α = 0 and α = 1 do not yet separate
        from α = 0.01 (measured: 1.4× and 1.0× its test error)."""
        return self.quick()

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        rng = np.random.default_rng(self.seed)
        target = (paper_target if self.target == "paper" else low_rank)(self.d, self.rank, rng)
        mask = rng.random((self.d, self.d)) < self.observed
        prob = dl.Completion(target, mask)
        res.log(f"completion: d={self.d}, r={self.rank}, {self.observed:.0%} observed, L={self.depth}, "
                f"eps={self.init_scale:g}, lr={self.lr:g} (mean), {self.steps} steps")
        net = dl.DeepLinearNetwork(self.depth, self.d, init="orthogonal", init_scale=self.init_scale, seed=self.seed)
        wide = dl.train(net, prob, dl.GD(lr=self.lr), self.steps, record_every=self.record_every, progress=progress)
        res.save_training("wide", wide)
        res.log(f"  wide: {wide.status}, test RMSE {wide.test_rmse[-1]:.3e} in {wide.elapsed:.1f} s")
        curves = {"wide": (wide.steps, wide.train_loss, wide.test_rmse)}
        final, best = {}, {}
        for alpha in self.alphas:
            model = dl.CompressedCompletion(prob, self.rank, self.depth, init="wide", init_scale=self.init_scale,
                                            outer_lr_scale=alpha, seed=self.seed)
            with warnings.catch_warnings():  # α = 1 may diverge: reported by save_training, not raised
                warnings.simplefilter("ignore", dl.DivergenceWarning)
                r = dl.train(model, prob, dl.GD(lr=self.lr), self.compressed_factor * self.steps,
                             record_every=self.record_every, progress=progress)
            # arrays, not save_training: a diverged α = 1 run is an expected outcome of the sweep
            res.save_arrays(f"alpha_{alpha:g}", {"steps": r.steps, "train_loss": r.train_loss,
                                                 "test_rmse": r.test_rmse},
                            info={"status": r.status, "n_steps": r.n_steps, "alpha": alpha})
            final[alpha] = float(r.test_rmse[-1]) if r.status != "diverged" else float("inf")
            seen = np.asarray(r.test_rmse)[np.isfinite(r.test_rmse)]
            best[alpha] = float(seen.min()) if seen.size else float("inf")
            curves[f"compressed α={alpha:g}"] = (r.steps, r.train_loss, r.test_rmse)
            res.metric(f"test_rmse_alpha_{alpha:g}", final[alpha])
            res.log(f"  compressed alpha={alpha:g}: {r.status}, test RMSE {r.test_rmse[-1]:.3e} in {r.elapsed:.2f} s")
        w = float(wide.test_rmse[-1])
        res.metric("test_rmse_wide", w)
        if 0.01 in final:
            res.check(Check.at_most("compressed α=0.01 test RMSE / wide", final[0.01] / w, 1.1))
        if 0.0 in final and 0.01 in final:
            res.check(Check.at_least("frozen U, V (α=0) test RMSE / α=0.01's", final[0.0] / final[0.01], 10.0))
        if 1.0 in final and 0.01 in final:
            res.check(Check.at_least("α=1 best test RMSE of the run / α=0.01's final", best[1.0] / final[0.01], 10.0))
        res.figure("completion", plot_curves, curves=curves,
                   title=f"d={self.d}, r={self.rank}, {self.observed:.0%} observed, η={self.lr:g}")


@register
@dataclass(frozen=True)
class DepthExperiment(Experiment):
    """Test error against width, depth 2 vs 3 (the paper's ``compare_depth``).

    d = 100, r = ``rank``, ``observed`` of the entries; networks ``[d, w, …, w, d]`` of depth
    L ∈ {2, 3} and hidden width w ∈ ``widths``, orthogonal init ε, GD (mean), ``seeds`` seeds.
    Plotted: final relative test RMSE against w, one line per depth (median over seeds).
    Checks (the paper's finding): at the largest width the deepest network recovers the matrix
    (every seed's test RMSE ≤ ``max_error``) and generalizes better than the shallowest
    (median ratio ≤ 1): with depth, the width need not be tuned to the rank.

    Measured (default config, 3000 steps): at width 100, depth 3 gives 0.056–0.107 over seeds
    0–2 and depth 2 0.50–0.56 (depth 2 gets worse with the width, depth 3 better).  Depth 3,
    width 100, seed 0 over 12,000 steps: 0.107 (3000), 0.068 (6000), 0.054 (9000), 0.051
    (12,000), with the train loss at 1e-8: the test error levels off near 0.05 (the implicit
    bias of this depth, not a lack of steps), hence 6000 steps and ``max_error`` = 0.1.
    """

    name = "depth"
    description = "deep matrix completion: final test error against width, depth 2 vs 3"

    d: int = param(100, "matrix size d", low=4)
    rank: int = param(10, "rank r of the target", low=1)
    observed: float = param(0.3, "observed fraction", low=0.0, high=1.0)
    widths: tuple[int, ...] = param((10, 20, 40, 70, 100), "hidden widths w")
    depths: tuple[int, ...] = param((2, 3), "depths L")
    init_scale: float = param(0.1, "init scale ε", low=0.0, low_open=True)
    lr: float = param(150.0, "step size η (mean reduction)", low=0.0, low_open=True)
    steps: int = param(6000, "steps of every run", low=1)
    seeds: int = param(3, "number of seeds", low=1)
    max_error: float = param(0.1, "check: test RMSE at the largest width", low=0.0)

    threads = 1

    def quick(self) -> "DepthExperiment":
        return replace(self, d=40, rank=3, widths=(3, 10, 40), steps=1200, seeds=1, lr=100.0)

    def validate(self) -> None:
        if not self.widths or any(w < 1 for w in self.widths):
            raise ConfigError(f"widths: must be a non-empty tuple of widths >= 1, got {self.widths!r}")
        if not self.depths or any(L < 1 for L in self.depths):
            raise ConfigError(f"depths: must be a non-empty tuple of depths >= 1, got {self.depths!r}")

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        errs = np.full((len(self.depths), len(self.widths), self.seeds), np.nan)
        for s in range(self.seeds):
            rng = np.random.default_rng(s)
            target = low_rank(self.d, self.rank, rng)
            mask = rng.random((self.d, self.d)) < self.observed
            prob = dl.Completion(target, mask)
            for i, L in enumerate(self.depths):
                for j, w in enumerate(self.widths):
                    net = dl.DeepLinearNetwork(L, dims=[self.d] + [w] * (L - 1) + [self.d], init="orthogonal",
                                               init_scale=self.init_scale, seed=s)
                    r = _train_quiet(net, prob, self.lr, self.steps)
                    errs[i, j, s] = r
                    res.log(f"  seed {s}, L={L}, width {w}: test RMSE {r:.3e}")
        med = np.nanmedian(errs, axis=2)
        for i, L in enumerate(self.depths):
            for j, w in enumerate(self.widths):
                res.metric(f"test_rmse_L{L}_w{w}", float(med[i, j]))
        deep = int(np.argmax(self.depths))
        res.check(Check.at_most(f"depth {self.depths[deep]}, width {self.widths[-1]}: worst test RMSE over seeds",
                                float(np.nanmax(errs[deep, -1])), self.max_error))
        if len(self.depths) > 1:
            shallow = int(np.argmin(self.depths))
            res.check(Check.at_most(f"width {self.widths[-1]}: median test RMSE, depth {self.depths[deep]} / "
                                    f"depth {self.depths[shallow]}", float(med[deep, -1] / med[shallow, -1]), 1.0))
        res.save_arrays("depth", {"errors": errs, "widths": np.array(self.widths), "depths": np.array(self.depths)})
        res.figure("depth", plot_depth, widths=np.array(self.widths), depths=self.depths, errors=med,
                   title=f"d={self.d}, r={self.rank}, {self.observed:.0%} observed")


def _train_quiet(net, prob, lr: float, steps: int) -> float:
    """Final test RMSE of one run (inf when it diverged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dl.DivergenceWarning)
        r = dl.train(net, prob, dl.GD(lr=lr), steps, record_every=steps, progress=False)
    return float(r.test_rmse[-1]) if r.status != "diverged" else float("inf")


@register
@dataclass(frozen=True)
class CompletionImageExperiment(Experiment):
    """A real image completed from a fraction of its pixels: ``skimage.data.camera()``
    (512 × 512, bundled with scikit-image) scaled to [0, 1], ``fractions`` of the pixels
    observed uniformly at random.  The compressed deep model (``init="spectral"``, rank
    ``rank``, depths 2 and 3, GD with momentum) beside SoftImpute (Mazumder–Hastie–Tibshirani,
    fancyimpute's defaults).  The image is not low rank (99.0% of its energy in its top 20
    singular values), so the errors are those of a rank-r fit.  The step is
    :meth:`~deeplinear.CompressedCompletion.stable_lr` (α = 0.01, momentum 0.9).

    Measured at the full size (512 × 512, r = 20, 1500 steps; relative test RMSE on the
    unobserved pixels):

    ========  =========  =========  ==========
    observed  depth 2    depth 3    SoftImpute
    ========  =========  =========  ==========
    10%       0.332      0.282      0.435
    20%       0.194      0.199      0.164
    30%       0.159      0.186      0.149
    ========  =========  =========  ==========

    (at 10% the rank-20 fit overfits: its test error is lowest after a few hundred steps.)
    The step is 4 × ``stable_lr``: its worst-case bound of the residual's curvature (83% of its
    curvature at 10% observed) is loose for this image; at 1 × the 10% runs were still far
    from converged after 1500 steps (test RMSE 0.488 at depth 2), at 4 × (about the step of
    the Gauss–Newton part alone, which trained these runs stably) the table above is
    reproduced (0.332, 0.319; 0.191, 0.199; 0.151, 0.178).
    Checks: each run's test RMSE is at most ``max_error``; the better depth's is at most
    ``max_ratio_softimpute`` times SoftImpute's (measured 0.65, 1.18, 1.07).  Files:
    ``image_<f>.png`` (the original, the observed pixels, the completions), ``errors`` (all
    errors).
    """

    name = "completion-image"
    description = "completing skimage's camera image from 10-30% of its pixels, vs SoftImpute"
    requires = ("skimage",)

    fractions: tuple[float, ...] = param((0.1, 0.2, 0.3), "observed fractions of the pixels")
    rank: int = param(20, "rank r of the compressed model (2r columns)", low=1)
    depths: tuple[int, ...] = param((2, 3), "depths L of the compressed model")
    lr_factor: float = param(4.0, "η = lr_factor × CompressedCompletion.stable_lr (momentum 0.9; its bound of the residual's curvature is loose here)", low=0.0, low_open=True)
    steps: int = param(1500, "steps", low=1)
    size: int = param(512, "image side (the camera image, resized by striding)", low=16)
    max_error: float = param(0.4, "check: relative test RMSE (a sanity bound: the image is not low rank)", low=0.0)
    max_ratio_softimpute: float = param(1.3, "check: best depth's test RMSE / SoftImpute's", low=0.0)
    seed: int = param(0, "seed of the observed pixels", low=0)

    def quick(self) -> "CompletionImageExperiment":
        return replace(self, fractions=(0.3,), size=128, rank=8, steps=300)

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        from skimage import data

        img = data.camera().astype(np.float64) / 255.0
        step = max(1, img.shape[0] // self.size)
        img = np.ascontiguousarray(img[::step, ::step])
        d1, d0 = img.shape
        rng = np.random.default_rng(self.seed)
        table = {}
        for f in self.fractions:
            mask = rng.random(img.shape) < f
            rows, cols = np.nonzero(mask)
            tr, tc = np.nonzero(~mask)
            prob = dl.Completion.from_entries(rows, cols, img[rows, cols], img.shape,
                                              test=(tr, tc, img[tr, tc]))
            images = {"original": img, "observed": np.where(mask, img, np.nan)}
            for L in self.depths:
                model = dl.CompressedCompletion(prob, self.rank, L, init="spectral", outer_lr_scale=0.01,
                                                seed=self.seed)
                # the curvature rule (MATH.md §4's scaling; the rule of σ₁ alone diverged at 10%, L = 2)
                lr = self.lr_factor * model.stable_lr(prob, momentum=0.9)
                r = dl.train(model, prob, dl.GD(lr=lr, momentum=0.9), self.steps,
                             record_every=max(1, self.steps // 50), progress=progress)
                res.save_training(f"f{f:g}_L{L}", r)
                err = float(r.test_rmse[-1]) if r.status != "diverged" else float("inf")
                B, V = model.end_to_end_factors()
                images[f"deep L={L}"] = np.clip(B @ V.T, 0, 1)
                table[f"deep_L{L}_f{f:g}"] = err
                res.check(Check.at_most(f"{f:.0%} observed, depth {L}: test RMSE", err, self.max_error))
                res.log(f"  {f:.0%} observed, compressed depth {L}: test RMSE {err:.4f} ({r.elapsed:.1f} s)")
            Z, its = soft_impute(rows, cols, img[rows, cols], img.shape, max_rank=2 * self.rank, seed=self.seed)
            e_si = _rel(Z[~mask], img[~mask])
            table[f"softimpute_f{f:g}"] = e_si
            best = min(table[f"deep_L{L}_f{f:g}"] for L in self.depths)
            res.check(Check.at_most(f"{f:.0%} observed: best depth's test RMSE / SoftImpute's", best / e_si,
                                    self.max_ratio_softimpute))
            images["SoftImpute"] = np.clip(Z, 0, 1)
            res.log(f"  {f:.0%} observed, SoftImpute: test RMSE {e_si:.4f} ({its} iterations)")
            res.figure(f"image_{f:g}", plot_images, images=images, title=f"camera, {f:.0%} of pixels observed")
        for k, v in table.items():
            res.metric(k, v)
        res.save_json("errors", table)


# -- plots (matplotlib imported inside) ----------------------------------------------------------

def plot_curves(path: str, *, curves: dict, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, (steps, train, test) in curves.items():
        axes[0].semilogy(steps, train, label=label)
        axes[1].semilogy(steps, test, label=label)
    axes[0].set_title("train loss")
    axes[1].set_title("relative test RMSE")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_depth(path: str, *, widths, depths, errors, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for i, L in enumerate(depths):
        ax.semilogy(widths, errors[i], "o-", label=f"depth {L}")
    ax.set_xlabel("width")
    ax.set_ylabel("relative test RMSE (median over seeds)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_images(path: str, *, images: dict, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(3 * len(images), 3.2))
    for ax, (label, im) in zip(axes, images.items()):
        ax.imshow(im, cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
