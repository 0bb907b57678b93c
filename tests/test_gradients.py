"""``dl.loss_and_gradients`` against the NumPy oracle: central finite differences of the
oracle's loss, the oracle's analytic gradient, and the loss values (MATH.md §1)."""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl
import oracle

# (d_0, …, d_L): depth 1 to 4, square and rectangular layers, bottlenecks and expansions.
DIMS = [
    [4, 3],
    [5, 5],
    [3, 5, 4],
    [4, 4, 4],
    [6, 2, 7, 3],
    [5, 5, 5, 5],
    [3, 6, 4, 5, 2],
    [4, 4, 4, 4, 4],
]
KINDS = ["factorization", "completion", "regression"]
N_SAMPLES = 7  # regression: columns of X


def random_weights(dims, rng, dtype=np.float64):
    """Gaussian layers scaled so the end-to-end map is O(1): W_l ~ N(0, 1/d_{l-1})."""
    return [np.ascontiguousarray(rng.standard_normal((dims[l + 1], dims[l])) / np.sqrt(dims[l]), dtype=dtype)
            for l in range(len(dims) - 1)]


def make_problem(kind, dims, reduction, rng):
    d_out, d_in = dims[-1], dims[0]
    if kind == "regression":
        X = rng.standard_normal((d_in, N_SAMPLES))
        Y = rng.standard_normal((d_out, N_SAMPLES))
        return dl.Regression(X, Y, reduction=reduction)
    target = rng.standard_normal((d_out, d_in))
    if kind == "factorization":
        return dl.Factorization(target, reduction=reduction)
    mask = rng.random((d_out, d_in)) < 0.5
    mask[0, 0], mask[-1, -1] = True, False  # at least one observed and one hidden entry
    return dl.Completion(target, mask, reduction=reduction)


def rel_err(a, b):
    """‖a − b‖ / ‖b‖ over a list of layers (all layers together)."""
    num = np.sqrt(sum(np.sum((np.asarray(x, np.float64) - y) ** 2) for x, y in zip(a, b)))
    den = np.sqrt(sum(np.sum(y ** 2) for y in b))
    return num / den


def case_id(dims):
    return "x".join(map(str, dims))


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dims", DIMS, ids=case_id)
def test_gradients_match_finite_differences_and_oracle(dims, kind, reduction, weight_decay):
    rng = np.random.default_rng([len(dims), sum(dims), KINDS.index(kind), int(reduction == "sum"),
                                 int(weight_decay * 10)])
    weights = random_weights(dims, rng)
    prob = make_problem(kind, dims, reduction, rng)
    ref = oracle.problem_from_dl(prob)

    net = dl.DeepLinearNetwork.from_weights(weights)
    train, test, grads = dl.loss_and_gradients(net, prob, weight_decay)

    # shapes: one gradient per layer, shaped like the layer; the network is untouched
    assert len(grads) == len(weights)
    for g, w in zip(grads, weights):
        assert g.shape == w.shape and g.dtype == np.float64
    for w_now, w in zip(net.weights, weights):
        np.testing.assert_array_equal(w_now, w)

    # loss values against the oracle
    ref_train, ref_test = oracle.losses(weights, ref, weight_decay)
    assert train == pytest.approx(ref_train, rel=1e-13)
    if kind == "completion":
        assert test == pytest.approx(ref_test, rel=1e-13)
        assert test > 0
    else:
        assert np.isnan(test)

    # analytic gradient of the oracle (independent formula) to round-off
    ref_grads = oracle.gradients(weights, ref, weight_decay)
    assert rel_err(grads, ref_grads) < 1e-12

    # central finite differences of the oracle's loss
    fd = oracle.finite_difference_gradients(weights, ref, weight_decay, rel_step=1e-6)
    gnorm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    assert gnorm > 0
    err = np.sqrt(sum(np.sum((g - f) ** 2) for g, f in zip(grads, fd)))
    assert err <= 1e-6 * gnorm, f"finite-difference mismatch {err / gnorm:.2e} (relative)"


@pytest.mark.parametrize("kind", KINDS)
def test_mean_is_sum_scaled(kind):
    """Mean reduction = sum reduction × c for the data term (weight decay is not scaled)."""
    dims = [4, 6, 5]
    rng = np.random.default_rng(7)
    weights = random_weights(dims, rng)
    state = rng.bit_generator.state
    p_sum = make_problem(kind, dims, "sum", rng)
    rng.bit_generator.state = state
    p_mean = make_problem(kind, dims, "mean", rng)
    net = dl.DeepLinearNetwork.from_weights(weights)
    ls, ts, gs = dl.loss_and_gradients(net, p_sum)
    lm, tm, gm = dl.loss_and_gradients(net, p_mean)
    n_out = N_SAMPLES if kind == "regression" else dims[0]
    c = 1.0 / (dims[-1] * n_out)
    assert p_mean.c == pytest.approx(c, rel=1e-15)
    assert lm == pytest.approx(c * ls, rel=1e-13)
    if kind == "completion":
        assert tm == pytest.approx(c * ts, rel=1e-13)
    for a, b in zip(gm, gs):
        np.testing.assert_allclose(a, c * b, rtol=1e-12, atol=1e-15 * np.abs(b).max())


def test_zero_residual_gives_weight_decay_gradient():
    """At an exact fit the data gradient vanishes: ∇_l = λ W_l exactly, loss = (λ/2)Σ‖W_l‖²."""
    rng = np.random.default_rng(3)
    weights = random_weights([3, 5, 4], rng)
    target = oracle.end_to_end(weights)
    net = dl.DeepLinearNetwork.from_weights(weights)
    for reduction in ("sum", "mean"):
        prob = dl.Factorization(np.ascontiguousarray(target), reduction=reduction)
        train, _, grads = dl.loss_and_gradients(net, prob, 0.3)
        assert train == pytest.approx(oracle.weight_penalty(weights, 0.3), rel=1e-12)
        for g, w in zip(grads, weights):
            np.testing.assert_allclose(g, 0.3 * w, rtol=1e-12, atol=1e-13)


def test_completion_full_mask_equals_factorization():
    rng = np.random.default_rng(5)
    weights = random_weights([5, 3, 6], rng)
    target = rng.standard_normal((6, 5))
    net = dl.DeepLinearNetwork.from_weights(weights)
    lf, _, gf = dl.loss_and_gradients(net, dl.Factorization(target, reduction="mean"), 0.1)
    lc, tc, gc = dl.loss_and_gradients(net, dl.Completion(target, np.ones((6, 5), bool), reduction="mean"), 0.1)
    assert lc == pytest.approx(lf, rel=1e-14)
    assert tc == 0.0
    for a, b in zip(gc, gf):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dims", [[6, 2, 7, 3], [5, 5, 5, 5, 5]], ids=case_id)
def test_float32_gradients_close_to_float64_oracle(dims, kind):
    rng = np.random.default_rng(11)
    w32 = random_weights(dims, rng, dtype=np.float32)
    prob = make_problem(kind, dims, "mean", rng)
    net = dl.DeepLinearNetwork.from_weights(w32)
    assert net.dtype == np.float32
    train, test, grads = dl.loss_and_gradients(net, prob, 0.1)
    ref = oracle.problem_from_dl(prob)
    ref_train, ref_test = oracle.losses(w32, ref, 0.1)
    assert train == pytest.approx(ref_train, rel=1e-5)
    if kind == "completion":
        assert test == pytest.approx(ref_test, rel=1e-5)
    assert all(g.dtype == np.float32 for g in grads)
    assert rel_err(grads, oracle.gradients(w32, ref, 0.1)) < 1e-5
