"""Compression at init (fast path), the ρ(t) schedule's fast loop, and the helpers of the
compression experiments (their runs: tests/test_experiments.py).

* A network never touched since its orthogonal init compresses to blocks ``ε I`` and ρ = ε
  without regenerating its init or a pass over its weights; the result equals the general path
  (structure fit of the weights) to round-off and trains to the same losses.  Any write to the
  core network's weights (a training step, ``set_weight``: the core's version) ends the "at
  init" state; copies keep it.
* ``rho_schedule`` equals, bit for bit, the NumPy-scalar loop it replaced (GD, heavy ball,
  Nesterov, weight decay, overflow to inf / NaN).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import deeplinear as dl
from deeplinear.experiments import stability_edge, target_spectrum
from deeplinear.parsimony import rho_schedule


# -- at-init state and the compress fast path -------------------------------------------------

def test_at_init_state():
    net = dl.DeepLinearNetwork(3, 20, init="orthogonal", init_scale=0.5, seed=1)
    assert net._at_init()
    net.weights, net.dims, net.end_to_end(), net.weight(2), net.describe()  # read-only: stays
    assert net._at_init()
    assert net.copy()._at_init()
    # the initial weights of an untouched network are its weights (no regeneration) ...
    for a, b in zip(net.initial_weights(), net.weights):
        assert np.array_equal(a, b)
    prob = dl.problems.factorization(20, 2, seed=1)
    dl.train(net, prob, dl.GD(lr=0.1), steps=3, progress=False)
    assert not net._at_init()
    assert not net.copy()._at_init()
    # ... and after training they are regenerated, still equal to the original init
    fresh = dl.DeepLinearNetwork(3, 20, init="orthogonal", init_scale=0.5, seed=1)
    for a, b in zip(net.initial_weights(), fresh.weights):
        assert np.array_equal(a, b)
    touched = dl.DeepLinearNetwork(2, 5, seed=0)
    core = touched._writable_core()  # handed out for writing: still at init until written
    assert touched._at_init()
    core.set_weight(0, touched.weight(1))  # any write counts (the core's version), even of the same values
    assert not touched._at_init() and not touched.copy()._at_init()


def test_compress_of_explicit_weights_at_init_equals_general_path():
    """Explicit (orthogonal) weights never trained: the fast path's blocks ε I and ρ = ε equal
    the structure fit of the general path (a network whose core was touched)."""
    d, r, L = 40, 3, 3
    prob = dl.problems.factorization(d, r, seed=2)
    ws = dl.DeepLinearNetwork(L, d, init_scale=0.5, seed=2).weights
    fast = dl.compress(dl.DeepLinearNetwork.from_weights(ws), prob)
    other = dl.DeepLinearNetwork.from_weights(ws)
    other._writable_core().set_weight(0, ws[0])  # written (same values): not at init any more
    slow = dl.compress(other, prob)
    assert fast.exact and slow.exact
    assert abs(fast.rho - slow.rho) <= 1e-14 and abs(fast.rho - 0.5) <= 1e-14
    for a, b in zip(fast.blocks.weights, slow.blocks.weights):
        assert np.max(np.abs(a - b)) <= 1e-14
    ra = dl.train(fast, prob, dl.GD(lr=0.5), 50, progress=False)
    rb = dl.train(slow, prob, dl.GD(lr=0.5), 50, progress=False)
    np.testing.assert_allclose(ra.train_loss, rb.train_loss, rtol=1e-10)


@pytest.mark.parametrize("given", [False, True])
def test_lazy_basis_of_compress_is_that_of_the_initial_weights(given):
    """``compress`` of a network at init computes its basis lazily (U, V and the initial weights
    on first read): read after the network has trained, it is still the basis of the initial
    weights, equal to the one computed eagerly from a copy of them; reading it changes nothing
    (same lists every time, the network's at-init state untouched)."""
    d, r, L = 30, 2, 3
    prob = dl.problems.factorization(d, r, seed=4)
    seeded = dl.DeepLinearNetwork(L, d, init_scale=0.4, seed=4)
    w0 = [w.copy() for w in seeded.weights]
    net = dl.DeepLinearNetwork.from_weights(w0) if given else seeded
    comp = dl.compress(net, prob)
    untouched = dl.compress(dl.DeepLinearNetwork.from_weights(w0), prob)
    assert untouched.basis.V is untouched.basis.V and untouched.basis.U is untouched.basis.U
    dl.train(net, prob, dl.GD(lr=0.5), 5, progress=False)  # trains before the basis is read
    assert not np.array_equal(net.weight(1), w0[0])
    eager = dl.invariant_basis(dl.DeepLinearNetwork.from_weights(w0), prob)
    assert comp.basis.depth == L and comp.basis.width == 2 * r
    for b in (comp.basis, untouched.basis):
        for a, e in zip(b.init, w0):
            assert np.array_equal(a, e)
        for a, e in zip(list(b.U) + list(b.V), list(eager.U) + list(eager.V)):
            assert np.max(np.abs(a - e)) <= 1e-13
    # the lift of the (untrained) compressed network is the initial network
    for a, e in zip(comp.lift().weights, w0):
        assert np.max(np.abs(a - e)) <= 1e-13


class _Untouchable:
    """Stands in for a wide network's core network: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the wide network's weights were used ({name})")


def _forbidden(*args, **kwargs):
    raise AssertionError("the wide network's initial weights were used")


@pytest.mark.parametrize("given", [False, True])
def test_training_after_compress_does_not_touch_the_wide_network(given, monkeypatch):
    """The compressed network is a snapshot of the wide one at compress time: its training reads
    only its blocks, ρ and Φ̃ (computed by compress), never the wide weights, so it runs with
    the wide network's core unreachable and after the wide network trained on its own; lift()
    then reads the wide network's *initial* weights (kept or regenerated) and gives the wide
    network trained by the same steps from the snapshot."""
    d, r, L, lr, steps = 30, 2, 3, 0.5, 40
    prob = dl.problems.factorization(d, r, seed=5)
    seeded = dl.DeepLinearNetwork(L, d, init_scale=0.4, seed=5)
    w0 = seeded.weights
    wide = dl.DeepLinearNetwork.from_weights(w0) if given else seeded
    comp = dl.compress(wide, prob)
    assert comp.exact
    core = wide._net
    monkeypatch.setattr(wide, "_net", _Untouchable())
    monkeypatch.setattr(wide, "_initial_weights_shared", _forbidden)
    res = dl.train(comp, prob, dl.GD(lr=lr), steps, progress=False)
    monkeypatch.undo()
    assert wide._net is core
    # the wide network trains on its own now: the snapshot's later training and lift ignore it
    dl.train(wide, prob, dl.GD(lr=0.3), 7, progress=False)
    res2 = dl.train(comp, prob, dl.GD(lr=lr), steps, progress=False)
    oracle = dl.DeepLinearNetwork.from_weights(w0)
    ro = dl.train(oracle, prob, dl.GD(lr=lr), 2 * steps, progress=False)
    np.testing.assert_allclose(np.concatenate([res.train_loss, res2.train_loss[1:]]), ro.train_loss,
                               rtol=1e-10)
    for a, b in zip(comp.lift().weights, oracle.weights):
        assert np.max(np.abs(a - b)) <= 1e-12


def test_compress_of_explicit_weights_refuses_weights_orthogonal_only_on_the_basis():
    """Explicit weights at init must be ε times orthogonal on the whole space, not only on the
    learning subspace: ``W_1 = ε O_1 (I + a u uᵀ + b w wᵀ)`` with ``u, w`` orthogonal to ``R``
    and to ``Oᵀ C`` (and ‖W_1‖_F, hence ε, unchanged) leaves ``V_{1,1}`` and ``O_l V_{l,1}`` as
    they were (a check on the subspace passes), yet its bulk singular values are not all ε, so the
    wide network does not keep the invariant structure: compress refuses it (randomized check
    of ``W Wᵀ = ε² I``)."""
    from deeplinear.parsimony import range_bases

    d, r, L, eps = 30, 2, 3, 0.5
    prob = dl.problems.factorization(d, r, seed=6)
    ws = dl.DeepLinearNetwork(L, d, init_scale=eps, seed=6).weights
    C, R, _ = range_bases(prob.target)
    o = np.linalg.multi_dot([w / eps for w in ws[::-1]])  # O = O_L ⋯ O_1
    q, _ = np.linalg.qr(np.hstack([R, o.T @ C]))
    g = np.random.default_rng(0).standard_normal((d, 2))
    g -= q @ (q.T @ g)
    uw, _ = np.linalg.qr(g)  # u, w orthonormal, orthogonal to R and Oᵀ C
    # stretch u by 1.2 and shrink w so that ‖W_1‖_F (hence ε) stays: 1.2² + s² = 2
    scale = np.array([1.2, np.sqrt(2 - 1.44)]) - 1.0
    bent = [ws[0] @ (np.eye(d) + (uw * scale) @ uw.T)] + ws[1:]
    assert abs(np.linalg.norm(bent[0]) - np.linalg.norm(ws[0])) <= 1e-12
    assert np.max(np.abs(np.linalg.svd(bent[0], compute_uv=False) - eps)) > 0.09  # not ε·orthogonal
    # ... yet orthogonal on the learning subspace (what a check there sees)
    v = dl.invariant_basis(dl.DeepLinearNetwork.from_weights(ws), prob).V[0]
    np.testing.assert_allclose(bent[0] @ v, ws[0] @ v, atol=1e-14)
    with pytest.raises(ValueError, match="net: layer 1's initial weights are not ε times an orthogonal"):
        dl.compress(dl.DeepLinearNetwork.from_weights(bent), prob)
    assert dl.compress(dl.DeepLinearNetwork.from_weights(ws), prob).exact  # the orthogonal ones pass


@pytest.mark.parametrize("eps", [1e-3, 0.7, -0.3])
def test_compress_at_init_equals_general_path(eps):
    d, r, L = 40, 3, 3
    prob = dl.problems.factorization(d, r, seed=2)
    net = dl.DeepLinearNetwork(L, d, init="orthogonal", init_scale=eps, seed=2)
    fast = dl.compress(net, prob)
    assert net._at_init() and fast.exact
    assert fast.rho == abs(eps)
    for w in fast.blocks.weights:
        assert np.array_equal(w, abs(eps) * np.eye(2 * r))
    other = dl.DeepLinearNetwork(L, d, init="orthogonal", init_scale=eps, seed=2)
    # written (same values): not at init any more, the general path (regenerated init, structure fit)
    other._writable_core().set_weight(0, other.weight(1))
    slow = dl.compress(other, prob)
    assert slow.exact
    assert abs(slow.rho - fast.rho) <= 1e-14 * abs(eps)
    for a, b in zip(fast.blocks.weights, slow.blocks.weights):
        assert np.max(np.abs(a - b)) <= 1e-14 * abs(eps)
    lr = 0.5 * stability_edge(float(np.linalg.svd(prob.target, compute_uv=False)[0]), prob.c, L)
    ra = dl.train(fast, prob, dl.GD(lr=lr), steps=300, progress=False)
    rb = dl.train(slow, prob, dl.GD(lr=lr), steps=300, progress=False)
    rw = dl.train(net, prob, dl.GD(lr=lr), steps=300, progress=False)
    np.testing.assert_allclose(ra.train_loss, rb.train_loss, rtol=1e-12)
    np.testing.assert_allclose(ra.train_loss, rw.train_loss, rtol=1e-10)


def test_compress_with_given_basis_uses_the_general_path():
    d, r = 30, 2
    prob = dl.problems.factorization(d, r, seed=0)
    net = dl.DeepLinearNetwork(3, d, init="orthogonal", init_scale=0.1, seed=0)
    basis = dl.invariant_basis(net, prob)
    comp = dl.compress(net, prob, basis=basis)
    assert comp.exact and abs(comp.rho - 0.1) < 1e-15


# -- rho_schedule: the fast loop equals the NumPy-scalar one ---------------------------------

def _rho_numpy_scalars(eps, lr, depth, steps, lam, c, mu, nesterov):
    out = np.empty(steps + 1)
    rho, b = np.float64(eps), np.float64(0.0)
    out[0] = rho
    p = 2 * depth - 1
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, steps + 1):
            g = c * rho ** p + lam * rho
            if mu == 0.0:
                rho = rho - lr * g
            else:
                b = mu * b + g
                rho = rho - lr * ((mu * b + g) if nesterov else b)
            out[t] = rho
    return out


def test_rho_schedule_bitwise():
    nonfinite = 0
    for eps, lr, L, lam, c, mu, nest in itertools.product(
            [1e-3, 0.5, 3.0], [0.1, 2.5, 250.0], [1, 3, 5], [0.0, 0.5], [1.0, 1e-6],
            [0.0, 0.9], [False, True]):
        if mu == 0.0 and nest:
            continue
        ref = _rho_numpy_scalars(eps, lr, L, 200, lam, c, mu, nest)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = rho_schedule(eps, lr, L, 200, weight_decay=lam, reduction_constant=c, momentum=mu,
                               nesterov=nest)
        # an overflow is reported (RuntimeWarning), a finite schedule is not
        assert [w.category for w in caught] == ([] if np.all(np.isfinite(ref)) else [RuntimeWarning])
        assert got.dtype == np.float64 and got.shape == ref.shape
        assert np.array_equal(got, ref, equal_nan=True), (eps, lr, L, lam, c, mu, nest)
        assert np.array_equal(np.signbit(got), np.signbit(ref))
        nonfinite += not np.all(np.isfinite(ref))
    assert nonfinite > 10  # the overflow path was exercised
    assert np.array_equal(rho_schedule(0.3, 0.1, 3, 0), [0.3])


# -- the experiments ----------------------------------------------------------------------------

def test_target_spectrum_matches_the_problem():
    prob = dl.problems.factorization(50, 4, seed=3)
    np.testing.assert_allclose(target_spectrum(50, 4, 3), np.linalg.svd(prob.target, compute_uv=False)[:4],
                               rtol=1e-12)


def test_compress_runs_its_products_on_one_thread_and_restores_the_count():
    """``compress`` runs NumPy's BLAS on one thread for its thin products and gives back the
    thread count it found, also when it raises; the result does not depend on it."""
    d, r, L = 40, 3, 3
    prob = dl.problems.factorization(d, r, seed=2)
    ws = dl.DeepLinearNetwork(L, d, init_scale=0.5, seed=2).weights
    before = dl.get_num_threads()
    try:
        dl.set_num_threads(2)
        a = dl.compress(dl.DeepLinearNetwork.from_weights(ws), prob)
        assert dl.get_num_threads() == 2
        with pytest.raises(ValueError):
            dl.compress(dl.DeepLinearNetwork.from_weights(ws), prob, rank=d)
        assert dl.get_num_threads() == 2
        dl.set_num_threads(1)
        b = dl.compress(dl.DeepLinearNetwork.from_weights(ws), prob)
        assert dl.get_num_threads() == 1
    finally:
        dl.set_num_threads(before)
    assert a.rho == b.rho
    for x, y in zip(a.blocks.weights, b.blocks.weights):
        assert np.array_equal(x, y)
