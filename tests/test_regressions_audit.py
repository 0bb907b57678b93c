"""Regressions of an audit of the public API (one test per finding): inputs of every public
function converted or refused as the README's conventions say, every keyword honored or refused,
and tracking that never records a silently wrong value or angle."""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl


# --- decay_fit: D and layers ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.array([1.0, 0.5, 0.25]) + 1j, np.array([1.0, 0.5], dtype=object),
                                 np.array([True, True, True]), np.array(["1", "0.5"]), "abc"])
def test_decay_fit_refuses_non_real_D(bad):
    with pytest.raises(TypeError, match="^D: "):
        dl.decay_fit(bad)


def test_decay_fit_refuses_complex_layers_and_accepts_integer_input():
    with pytest.raises(TypeError, match="^layers: "):
        dl.decay_fit([1.0, 0.5, 0.25, 0.125], layers=np.arange(4) + 1j)
    with pytest.raises(ValueError, match="^D: must be 1-D"):
        dl.decay_fit([[1.0, 0.5]])
    # integers and lists are numbers like any other: the fit of 8, 4, 2, 1 over layers 1..4
    fit = dl.decay_fit(np.array([8, 4, 2, 1]), layers=[1, 2, 3, 4])
    assert np.isclose(fit.ratio, 0.5, rtol=1e-14) and np.isclose(fit.r2, 1.0, rtol=1e-14)


# --- class_separation: integer arrays and nested lists as the other array inputs ------------

def _separation_oracle(h, labels):
    h = np.asarray(h, dtype=np.float64)
    classes = np.unique(labels)
    means = np.stack([h[:, labels == k].mean(axis=1) for k in classes], axis=1)
    idx = np.searchsorted(classes, labels)
    within = np.sum((h - means[:, idx]) ** 2) / h.shape[1]
    between = np.sum((means - h.mean(axis=1, keepdims=True)) ** 2) / classes.size
    return within / between


def test_class_separation_accepts_integer_and_list_features():
    rng = np.random.default_rng(0)
    H = rng.integers(-5, 6, size=(4, 12))
    labels = np.repeat([0, 1, 2], 4)
    want = _separation_oracle(H, labels)
    for feat in (H, H.astype(np.float64), H.tolist(), np.asfortranarray(H), H.astype(np.float32)):
        got = dl.class_separation([feat], labels)
        assert got.shape == (1,) and np.isclose(got[0], want, rtol=1e-12), type(feat)
    with pytest.raises(TypeError, match=r"^features\[0\]: must be real"):
        dl.class_separation([H + 1j], labels)


# --- Classification keeps float64 copies ---------------------------------------------------

def test_classification_stores_float64():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 8)).astype(np.float32)
    labels = np.array([0, 1] * 4)
    prob = dl.Classification(X, labels, test=(X[:, :4], labels[:4]))
    for a in (prob.X, prob.X_test):
        assert a.dtype == np.float64 and a.flags.c_contiguous and not a.flags.writeable
    assert np.array_equal(prob.X, X.astype(np.float64))


# --- reduced_network: seed and method only where they act, spectrum checked -----------------

def test_reduced_network_refuses_sampling_keywords_with_overlap():
    K = np.array([[0.6, 0.0], [0.0, 0.8]])
    base = dict(init_scale=0.1, overlap=K)
    dl.reduced_network(50, 3, [2.0, 1.0], **base)  # accepted without them
    for kw in ({"seed": 5}, {"seed": 0}, {"method": "frame"}, {"method": "bartlett"}):
        with pytest.raises(ValueError, match=f"^{next(iter(kw))}: applies only to a sampled overlap"):
            dl.reduced_network(50, 3, [2.0, 1.0], **base, **kw)
    # without overlap both act: another seed, another sampled overlap
    a, _ = dl.reduced_network(50, 3, [2.0, 1.0], init_scale=0.1, seed=1)
    b, _ = dl.reduced_network(50, 3, [2.0, 1.0], init_scale=0.1, seed=2)
    assert not np.array_equal(a.problem.phi_tilde, b.problem.phi_tilde)
    c, _ = dl.reduced_network(50, 3, [2.0, 1.0], init_scale=0.1)  # defaults: seed 0, bartlett
    d, _ = dl.reduced_network(50, 3, [2.0, 1.0], init_scale=0.1, seed=0, method="bartlett")
    assert np.array_equal(c.problem.phi_tilde, d.problem.phi_tilde)


@pytest.mark.parametrize("bad,err", [(np.array([2.0, 1.0]) + 1j, TypeError), (np.array([True, True]), TypeError),
                                     (np.array([2.0, 1.0], dtype=object), TypeError), ("abc", TypeError),
                                     ([[2.0, 1.0]], ValueError), ([], ValueError)])
def test_reduced_network_refuses_bad_spectrum(bad, err):
    with pytest.raises(err, match="^spectrum: "):
        dl.reduced_network(50, 3, bad)


# --- CompressedCompletion: power_steps only with the spectral init --------------------------

def test_power_steps_refused_with_wide_init_whatever_its_value():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((12, 2)) @ rng.standard_normal((2, 12))
    prob = dl.Completion(target, (rng.random((12, 12)) < 0.6).astype(float))
    for value in (1, 3, 8):
        with pytest.raises(ValueError, match="^power_steps: applies to init='spectral' only"):
            dl.CompressedCompletion(prob, rank=2, depth=2, init="wide", power_steps=value)
    assert dl.CompressedCompletion(prob, rank=2, depth=2, init="wide").power_steps is None
    assert dl.CompressedCompletion(prob, rank=2, depth=2).power_steps == 3


# --- compressed networks: settings of an iteration they do not run are refused --------------

@pytest.mark.parametrize("kw", [{"tol": 1e-2}, {"max_iter": 4}])
def test_compressed_tracking_refuses_iteration_settings(kw):
    prob = dl.problems.factorization(20, 2, seed=0)
    comp = dl.compress(dl.DeepLinearNetwork(3, 20, init_scale=0.3, seed=1), prob)
    with pytest.raises(ValueError, match=f"^{next(iter(kw))}: a compressed network's tracked values are exact"):
        dl.train(comp, prob, dl.GD(lr=2.0), steps=3, track=dl.Tracking("incremental", **kw), progress=False)


# --- public generators validate their arguments ---------------------------------------------

def test_generators_validate_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="^rank: "):
        dl.problems.low_rank_target(5, 0, rng)
    with pytest.raises(ValueError, match="^d: "):
        dl.problems.low_rank_target(-1, 1, rng)
    with pytest.raises(ValueError, match="^d_in: "):
        dl.problems.low_rank_target(5, 1, rng, d_in=0)
    with pytest.raises(TypeError, match="^rng: "):
        dl.problems.low_rank_target(5, 1, 0)
    with pytest.raises(ValueError, match="^n: "):
        dl.problems.haar_orthogonal(0, rng)
    with pytest.raises(TypeError, match="^rng: "):
        dl.problems.haar_orthogonal(3, None)
    # what they draw is unchanged: Φ = A Bᵀ / sqrt(r) from one stream, A then B
    a = np.random.default_rng(3)
    A, B = a.standard_normal((6, 2)), a.standard_normal((4, 2))
    assert np.array_equal(dl.problems.low_rank_target(6, 2, np.random.default_rng(3), d_in=4), A @ B.T / np.sqrt(2))
    q = dl.problems.haar_orthogonal(5, np.random.default_rng(4))
    assert np.allclose(q.T @ q, np.eye(5), atol=1e-14)


# --- Result paths --------------------------------------------------------------------------

def test_result_paths_are_named(tmp_path):
    res = dl.train(dl.DeepLinearNetwork(2, 4, seed=0), dl.problems.factorization(4, 1), dl.GD(lr=0.1), steps=2,
                   progress=False)
    for call in (lambda: res.save(3), lambda: res.save_json(3), lambda: dl.Result.load(3)):
        with pytest.raises(TypeError, match="^path: must be a path"):
            call()
    with pytest.raises(ValueError, match="^path: the folder"):
        res.save_json(tmp_path / "missing" / "r.json")


# --- InvariantBasis checks what it is given -------------------------------------------------

def test_invariant_basis_constructor_checks_arrays():
    net = dl.DeepLinearNetwork(3, 10, init_scale=0.5, seed=0)
    prob = dl.problems.factorization(10, 2, seed=0)
    b = dl.invariant_basis(net, prob)
    ok = dict(U=b.U, V=b.V, rank=2, method=b.method, init_scale=b.init_scale, init=b.init)
    again = dl.InvariantBasis(**ok)
    assert all(np.array_equal(x, y) for x, y in zip(again.U, b.U))
    with pytest.raises(TypeError, match=r"^U\[0\]: must be real"):
        dl.InvariantBasis(**{**ok, "U": [u + 0j for u in b.U]})
    with pytest.raises(TypeError, match="^V: must be a non-empty list"):
        dl.InvariantBasis(**{**ok, "V": b.V[0]})
    with pytest.raises(ValueError, match=r"^U\[1\], V\[1\]: must be"):
        dl.InvariantBasis(**{**ok, "U": [b.U[0], b.U[1][:, :3], b.U[2]]})
    with pytest.raises(ValueError, match="^U, V, init: must have one matrix per layer"):
        dl.InvariantBasis(**{**ok, "init": b.init[:2]})
