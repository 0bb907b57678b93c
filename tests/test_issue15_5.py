"""Issue 15, finding 5: float32 orthogonal networks work with tolerances of float32's precision:
invariant_basis, track="structured", compress(...).lift(), and track="full" records angles
(not empty arrays).  Oracles: the float64 network of the same seed, NumPy SVDs."""

import numpy as np
import pytest

import deeplinear as dl

D, L, R = 30, 3, 3


@pytest.fixture
def prob():
    return dl.problems.factorization(D, R, seed=1)


def _net(dtype):
    return dl.DeepLinearNetwork(L, D, seed=1, init_scale=0.1, dtype=dtype)


def _min_cos(a, b):
    """Smallest cosine of the principal angles between span(a) and span(b)."""
    return np.linalg.svd(a.T @ b, compute_uv=False).min()


def test_invariant_basis_float32_spans_the_float64_basis(prob):
    b32, b64 = dl.invariant_basis(_net(np.float32), prob), dl.invariant_basis(_net(np.float64), prob)
    for u32, u64 in zip(b32.U, b64.U):
        assert u32.shape == (D, 2 * R)
        np.testing.assert_allclose(u32.T @ u32, np.eye(2 * R), atol=1e-5)  # float32 init
        assert _min_cos(u32, u64) > 1 - 1e-5


def test_invariant_basis_float32_still_refuses_a_gaussian_init(prob):
    net = dl.DeepLinearNetwork(L, D, init="gaussian", seed=1, dtype=np.float32)
    with pytest.raises(ValueError, match="^net: .*orthogonal"):
        dl.invariant_basis(net, prob)


def test_track_structured_float32(prob):
    net = _net(np.float32)
    res = dl.train(net, prob, dl.GD(lr=2.0), 30, track="structured", progress=False)
    sv = res.tracking["singular_values"]
    assert sv.shape == (31, L, D) and np.isfinite(sv).all()
    # the last record against NumPy's SVD of the trained float32 weights
    for l, w in enumerate(net.weights):
        np.testing.assert_allclose(sv[-1, l], np.linalg.svd(w.astype(np.float64), compute_uv=False),
                                   rtol=0, atol=1e-5 * sv[-1, l, 0])


def test_track_full_float32_records_angles(prob):
    res = dl.train(_net(np.float32), prob, dl.GD(lr=2.0), 30, track="full", progress=False)
    for key in ("angles_right", "angles_left"):
        ang = res.tracking[key]
        assert ang.shape == (31, L, 2 * R)
        # the learning subspace stays in the invariant one: angles ~ 0 once it is identifiable
        assert np.isfinite(ang[-1]).all() and np.max(ang[-1]) < 1e-3


def test_compress_and_lift_float32(prob):
    net = _net(np.float32)
    dl.train(net, prob, dl.GD(lr=2.0), 20, progress=False)
    comp = dl.compress(net, prob)  # no ApproximationWarning: filterwarnings=error
    assert comp.exact
    wide = comp.lift()
    for a, b in zip(wide.weights, net.weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
    at_init = dl.compress(_net(np.float32), prob).lift()
    for a, b in zip(at_init.weights, _net(np.float64).weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
