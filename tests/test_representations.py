"""Class separation D_l and its log-linear decay (MATH.md §5): against covariances formed
explicitly here, and on the paper's synthetic setting after training (linear and ReLU)."""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl


def explicit_D(H, labels):
    """tr(Σ_W)/tr(Σ_B) with Σ_W, Σ_B formed as d × d matrices, straight from the definition."""
    classes = np.unique(labels)
    N, K = H.shape[1], classes.size
    mu_g = H.mean(axis=1)
    sw = np.zeros((H.shape[0], H.shape[0]))
    sb = np.zeros_like(sw)
    for k in classes:
        Hk = H[:, labels == k]
        mu = Hk.mean(axis=1)
        for i in range(Hk.shape[1]):
            e = Hk[:, i] - mu
            sw += np.outer(e, e)
        sb += np.outer(mu - mu_g, mu - mu_g)
    return np.trace(sw / N) / np.trace(sb / K)


def test_class_separation_matches_explicit_covariances():
    rng = np.random.default_rng(0)
    labels = rng.integers(-5, 5, size=40) * 3          # unbalanced classes, arbitrary values
    feats = [rng.standard_normal((d, 40)) + 0.5 * (labels % 4)[None, :] for d in (3, 7, 2)]
    D = dl.class_separation(feats, labels)
    np.testing.assert_allclose(D, [explicit_D(H, labels) for H in feats], rtol=1e-12)
    assert dl.class_separation(feats[1], labels).shape == (1,)


def test_decay_fit_matches_polyfit():
    rng = np.random.default_rng(1)
    D = np.exp(2.0 - 0.7 * np.arange(8) + 0.05 * rng.standard_normal(8))
    fit = dl.decay_fit(D)
    slope, intercept = np.polyfit(np.arange(8), np.log(D), 1)
    pred = intercept + slope * np.arange(8)
    r2 = 1 - np.sum((np.log(D) - pred) ** 2) / np.sum((np.log(D) - np.log(D).mean()) ** 2)
    assert np.isclose(fit.ratio, np.exp(slope), rtol=1e-12) and np.isclose(fit.intercept, intercept, rtol=1e-12)
    assert np.isclose(fit.r2, r2, rtol=1e-12) and 0.99 < fit.r2 < 1
    exact = dl.decay_fit(3.0 * 0.5 ** np.arange(5))
    assert np.isclose(exact.ratio, 0.5, rtol=1e-14) and np.isclose(exact.r2, 1.0, rtol=1e-14)
    with pytest.raises(ValueError, match="D: values must be finite and > 0"):
        dl.decay_fit([1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="D: must have at least 2 values"):
        dl.decay_fit([1.0])


def test_bad_separation_input():
    H = np.ones((3, 6))
    with pytest.raises(ValueError, match="labels: need at least 2 classes"):
        dl.class_separation([H], np.zeros(6, dtype=int))
    with pytest.raises(TypeError, match="labels: must be an integer"):
        dl.class_separation([H], np.arange(6) * 0.5)
    with pytest.raises(ValueError, match="features\\[1\\]: has 5 samples"):
        dl.class_separation([H, H[:, :5]], np.arange(6) % 2)
    with pytest.raises(ValueError, match="features\\[0\\]: contains NaN"):
        dl.class_separation([np.full((3, 6), np.nan)], np.arange(6) % 2)


# -- the paper's synthetic setting (MATH.md §5) ----------------------------------------------------------

def collapse_run(seed, activation):
    """K = 5 classes × 10 samples, 50 × 50 Haar-orthogonal X, depth 8, widths 50 (last layer
    5 × 50), orthogonal init ε = 0.5, GD η = 1, mean reduction, until the loss is < 1e-6 (tested
    every 100 steps, as the reference)."""
    prob = dl.problems.orthogonal_classes(5, 10, seed=seed)
    net = dl.DeepLinearNetwork(8, dims=[50] * 8 + [5], init="orthogonal", init_scale=0.5, seed=seed,
                               activation=activation)
    steps = 0
    while True:
        res = dl.train(net, prob, dl.GD(lr=1.0), 100, progress=False, record_every=100)
        steps += res.n_steps
        if res.final_loss < 1e-6 or steps >= 30000:
            break
    assert res.final_loss < 1e-6 and res.train_accuracy == 1.0
    return dl.decay_fit(dl.class_separation(net.features(prob.X), prob.labels)), steps


@pytest.mark.parametrize("seed", range(5))
def test_linear_separation_is_geometric(seed, one_thread):  # 50-wide layers: one thread
    """MATH.md §5, seeds 0–4: ratio 0.185–0.188 per layer, 1 − R² ≤ 6e-5 (≈ 1500 steps)."""
    fit, steps = collapse_run(seed, None)
    assert 0.185 <= fit.ratio <= 0.188 and fit.r2 >= 0.999, (fit, steps)


def test_relu_separates_faster(one_thread):
    """MATH.md §5: the ReLU ratio is below the linear one (whose range starts at 0.185), R² ≥
    0.98.  A ReLU run is sensitive to round-off (activation patterns flip): seed 3 gives R²
    0.993 with two BLAS threads and 0.972 with one, so the threshold holds for the median of
    three seeds (one thread: 0.990, 0.991, 0.993; ratios 0.075, 0.114, 0.086; ≈ 10,000 steps
    each) and every seed is above 0.95."""
    fits = [collapse_run(seed, "relu") for seed in (0, 1, 2)]
    ratios = [f.ratio for f, _ in fits]
    r2 = [f.r2 for f, _ in fits]
    assert max(ratios) < 0.185 and min(r2) >= 0.95 and np.median(r2) >= 0.98, fits
