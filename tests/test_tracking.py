"""``dl.train(track=...)``: singular values and learning-subspace angles recorded in the core,
checked against NumPy (``numpy.linalg.svd`` of the weights captured by a callback at every
recorded step) and against each other.

* every mode ("full", "incremental", "structured") on factorization and completion, L = 2, 3, 4:
  singular values to 1e-10 relative (to s_1); full-mode angles against an independent NumPy
  computation of the learning subspace (the 2r singular directions with |s² − ρ̂²| largest, ρ̂
  the median singular value) and of principal angles;
* "structured" equals "full" over 1000 steps, through the crossing of MATH.md §2's example
  (d=30, r=3, L=3, ε=1, ‖Φ‖₂ = 1, "sum", η = 0.1), with momentum, Nesterov and weight decay;
  the full-mode invariance angles stay at round-off through the crossing, where identifying the
  subspace by sorted index fails;
* "incremental" (track_k = 2r) against full SVDs, with its fallback and iteration counts;
* the tracking dict through ``Result.save`` / ``Result.load``.

Observed (this machine): the crossing example's lower block values of W_1 and W_L start *below*
ρ after step 1 (ρ drops faster at first) and cross it upwards at t ≈ 120–470 (seed 0/1: t = 126,
128, 306, 315, 439, 466); the full-mode angles reach ~3e-8 right at the crossings (round-off
over the gap) and are ~1e-14 elsewhere.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import deeplinear as dl
from deeplinear.parsimony import invariant_basis, rho_schedule, structure_residual

log = logging.getLogger(__name__)

D, R = 12, 2               # d > 4r: the median singular value is a bulk value
STEPS, EVERY = 60, 7       # records at 0, 7, …, 56 and the last step, 60
EPS = float(np.finfo(float).eps)
IDENTIFY_TOL = 1e-10       # the tracker's "not identifiable" gap (in s² / s_1²)


# -- problems and runs ----------------------------------------------------------------------------

def unit_target(d, r, rng):
    phi = dl.problems.low_rank_target(d, r, rng)
    return phi / np.linalg.norm(phi, 2)      # ‖Φ‖₂ = 1


def make_problem(kind, d=D, r=R, seed=0, reduction="sum"):
    rng = np.random.default_rng(seed)
    phi = unit_target(d, r, rng)
    if kind == "factorization":
        return dl.Factorization(phi, reduction=reduction)
    return dl.Completion(phi, rng.random((d, d)) < 0.5, reduction=reduction)


def run(net, prob, opt, steps, every=1, **track):
    """Train with tracking every ``every`` steps and a callback capturing the weights at the same
    steps.  Returns ``(result, {step: [W_1, …, W_L]})``."""
    weights = {}

    def grab(step, n):
        weights[step] = n.weights

    mode = track.pop("track")
    opts = {name: track.pop(f"track_{name}") for name in ("k", "tol", "max_iter", "verify_every")
            if f"track_{name}" in track}
    tracking = dl.Tracking(mode, every=every, basis=track.pop("basis", None), **opts)
    res = dl.train(net, prob, opt, steps, progress=False, track=tracking, callback=grab,
                   callback_every=every, **track)
    assert res.status == "max_steps"
    np.testing.assert_array_equal(res.tracking["steps"], sorted(weights))
    return res, weights


# -- NumPy oracle of the tracked quantities -------------------------------------------------------

def expected_values(s, mode, k):
    """What the tracker records for the (descending) singular values ``s`` of one layer."""
    if mode == "incremental":
        return s[:k]
    if k is None or 2 * k >= s.size:
        return s
    return np.concatenate([s[:k], s[-k:]])


def np_principal_angles(a, b):
    """Principal angles (ascending) between the column spans of orthonormal ``a`` and ``b``:
    cosines from svd(aᵀb), and for angles below π/4 the sines, from svd(b − a aᵀb) (arccos of a
    cosine resolves nothing below ~1.5e-8)."""
    m = a.T @ b
    cos = np.clip(np.linalg.svd(m, compute_uv=False), 0.0, 1.0)                     # descending
    sin = np.clip(np.linalg.svd(b - a @ m, compute_uv=False), 0.0, 1.0)[::-1]       # ascending
    return np.where(cos ** 2 >= 0.5, np.arcsin(sin), np.arccos(cos))


def np_arccos_angles(a, b):
    """The textbook formula: arccos of the singular values of aᵀb (ascending angles)."""
    return np.arccos(np.clip(np.linalg.svd(a.T @ b, compute_uv=False), -1.0, 1.0))


def np_learning_subspace(w, r2):
    """The learning subspace of one layer as the tracker defines it, from NumPy's SVD.

    Returns ``(U_sel, V_sel, gap, sep)``: the left/right singular vectors of the 2r values with
    |s² − ρ̂²| largest (ρ̂ = the median singular value, the upper one for an even count),
    ``gap`` = the 2r-th minus the (2r+1)-th of those distances over s_1² (the tracker reports
    NaN angles when it is ≤ 1e-10), ``sep`` = the smallest distance between a selected and an
    unselected singular value (the subspace's sensitivity to round-off is ~eps·s_1/sep).
    """
    u, s, vt = np.linalg.svd(w)
    rho_hat = np.sort(s)[s.size // 2]
    dist = np.abs(s ** 2 - rho_hat ** 2)
    order = np.argsort(-dist, kind="stable")
    sel, rest = order[:r2], order[r2:]
    gap = (dist[order[r2 - 1]] - dist[order[r2]]) / s[0] ** 2 if rest.size else np.inf
    sep = np.min(np.abs(s[sel][:, None] - s[rest][None, :])) if rest.size else np.inf
    return u[:, sel], vt[sel].T, gap, sep


def check_values(res, weights, mode, k=None):
    """Recorded singular values == NumPy's, to 1e-10 relative to s_1, every record and layer."""
    tr = res.tracking
    worst = 0.0
    for i, step in enumerate(tr["steps"]):
        for l, w in enumerate(weights[step]):
            s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
            exp = expected_values(s, mode, k)
            got = tr["singular_values"][i, l]
            assert np.all(np.isnan(got[exp.size:]))          # padding, if any
            err = np.max(np.abs(got[:exp.size] - exp)) / s[0]
            worst = max(worst, err)
    assert worst <= 1e-10, worst
    return worst


def check_full_angles(res, weights, basis):
    """Full-mode angles (right, left, adjacent-layer alignment) against the NumPy oracle.

    A record is skipped only when NumPy's gap is within 10× of the tracker's identifiability
    threshold (round-off could then decide either way); otherwise NaN must match NaN and the
    angles must agree within round-off over the subspace's separation.
    """
    tr = res.tracking
    r2 = basis.width
    n_checked = 0
    for i, step in enumerate(tr["steps"]):
        subs = [np_learning_subspace(w, r2) for w in weights[step]]
        for l, (u, v, gap, sep) in enumerate(subs):
            if abs(gap - IDENTIFY_TOL) < 9 * IDENTIFY_TOL:
                continue
            right, left = tr["angles_right"][i, l], tr["angles_left"][i, l]
            if gap <= IDENTIFY_TOL:
                assert np.all(np.isnan(right)) and np.all(np.isnan(left)), (step, l)
                continue
            tol = 1e-12 + 100 * EPS / sep
            np.testing.assert_allclose(right, np_principal_angles(basis.V[l], v), rtol=0, atol=tol)
            np.testing.assert_allclose(left, np_principal_angles(basis.U[l], u), rtol=0, atol=tol)
            # the textbook arccos formula agrees to its resolution (~1.5e-8)
            np.testing.assert_allclose(right, np_arccos_angles(basis.V[l], v), rtol=0, atol=1e-7 + tol)
            n_checked += 1
        for l in range(len(subs) - 1):
            (u, _, gu, su), (_, v, gv, sv) = subs[l], subs[l + 1]
            if min(abs(gu - IDENTIFY_TOL), abs(gv - IDENTIFY_TOL)) < 9 * IDENTIFY_TOL:
                continue
            got = tr["angles_align"][i, l]
            if min(gu, gv) <= IDENTIFY_TOL:
                assert np.all(np.isnan(got))
                continue
            tol = 1e-12 + 100 * EPS / min(su, sv)
            np.testing.assert_allclose(got, np_principal_angles(u, v), rtol=0, atol=tol)
    assert n_checked > 0
    return n_checked


# -- 1. every mode against NumPy's SVD ------------------------------------------------------------

CASES = [(kind, L, mode) for kind in ("factorization", "completion") for L in (2, 3, 4)
         for mode in ("full", "incremental", "structured") if not (kind == "completion" and mode == "structured")]


@pytest.mark.parametrize("kind, depth, mode", CASES)
def test_mode_against_numpy_svd(kind, depth, mode):
    prob = make_problem(kind, seed=depth)
    net = dl.DeepLinearNetwork(depth, D, init_scale=0.5, seed=10 + depth)
    # completion: the paper's gradient basis (closed form is for factorization)
    basis = invariant_basis(net, prob, method="gradient", rank=R) if kind == "completion" else None
    res, weights = run(net, prob, dl.GD(lr=0.1), STEPS, EVERY, track=mode, basis=basis)
    tr = res.tracking
    assert tr["mode"] == mode
    np.testing.assert_array_equal(tr["steps"], list(range(0, STEPS, EVERY)) + [STEPS])
    n_rec = len(tr["steps"])
    k = 2 * R if mode == "incremental" else None           # incremental default: k = 2r
    assert tr["singular_values"].shape == (n_rec, depth, k or D)
    assert tr["angles_right"].shape == tr["angles_left"].shape == (n_rec, depth, 2 * R)
    assert tr["angles_align"].shape == (n_rec, depth - 1, 2 * R)
    assert np.all(np.diff(tr["singular_values"], axis=-1) <= 0)   # descending
    check_values(res, weights, mode, k)

    basis = basis or invariant_basis(net, prob)
    if mode == "full":
        check_full_angles(res, weights, basis)
        # step 0: W_l = ε O_l, all singular values equal: the subspace is not identifiable
        assert np.all(np.isnan(tr["angles_right"][0])) and np.all(np.isnan(tr["angles_align"][0]))
        if kind == "factorization":
            # the law of parsimony: the learning subspace never leaves the invariant basis
            for name in ("angles_right", "angles_left", "angles_align"):
                a = tr[name][1:]
                assert np.all(np.isfinite(a)) and a.max() < 1e-10, (name, np.nanmax(a))
        else:
            # completion mixes the blocks: the subspace moves (angles are not round-off)
            assert np.nanmax(tr["angles_right"]) > 1e-4
    elif mode == "structured":
        for name in ("angles_right", "angles_left", "angles_align"):
            assert np.all(np.isnan(tr[name]))                  # not measured by this mode
        assert tr["verify_error"] == 0.0                       # no verification asked
    else:
        assert tr["fallbacks"] >= 0 and tr["iterations"] >= tr["fallbacks"]
        assert 0.0 <= tr["max_residual"] <= 1e-10
        # top-2r by index: a valid learning subspace while it is separated from the rest
        for i, step in enumerate(tr["steps"][1:], start=1):
            for l, w in enumerate(weights[step]):
                u, s, vt = np.linalg.svd(w)
                sep = s[2 * R - 1] - s[2 * R]
                if sep < 1e-3 * s[0]:
                    continue
                # Ritz vectors: accurate to (residual tolerance)·s_1 / separation
                tol = 1e-9 + 2e-10 * s[0] / sep
                np.testing.assert_allclose(tr["angles_right"][i, l],
                                           np_principal_angles(basis.V[l], vt[:2 * R].T), atol=tol, rtol=0)


@pytest.mark.parametrize("mode, k", [("full", 1), ("full", 3), ("full", 6), ("full", 50),
                                     ("structured", 3), ("structured", 6), ("incremental", 1),
                                     ("incremental", 5), ("incremental", D)])
def test_track_k(mode, k):
    """``track_k``: top k then bottom k (all when 2k ≥ d); incremental: the top k."""
    prob = make_problem("factorization", seed=5)
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=5)
    res, weights = run(net, prob, dl.GD(lr=0.1), 30, 4, track=mode, track_k=k)
    n = k if mode == "incremental" else (D if 2 * k >= D else 2 * k)
    assert res.tracking["singular_values"].shape[-1] == n
    check_values(res, weights, mode, k)


def test_no_basis_no_angles_and_rectangular_layers():
    """Completion without a basis, and rectangular layers: values only (no angle columns);
    layers with fewer values are NaN-padded."""
    prob = make_problem("completion", seed=3)
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=3)
    res, weights = run(net, prob, dl.GD(lr=0.1), 20, 5, track="full")
    assert res.tracking["angles_right"].shape == (5, 3, 0)
    check_values(res, weights, "full")

    rng = np.random.default_rng(4)
    dims = [7, 9, 5]
    phi = rng.standard_normal((dims[-1], dims[0])) / 4
    net = dl.DeepLinearNetwork(2, dims=dims, init_scale=0.7, seed=4)
    for mode, k in (("full", None), ("incremental", 3)):
        res, weights = run(net.copy(), dl.Factorization(phi, "sum"), dl.GD(lr=0.1), 20, 3,
                           track=mode, track_k=k)
        sv = res.tracking["singular_values"]
        assert sv.shape == (len(res.tracking["steps"]), 2, 3 if k else 7)
        check_values(res, weights, mode, k)
        if k is None:
            assert np.all(np.isnan(sv[:, 1, 5:])) and np.all(np.isfinite(sv[:, 0]))


def test_full_rank_target_tracks_without_angles():
    """A factorization whose rank exceeds d/2 has no invariant basis: tracking still records
    the values (it used to raise "rank: 2r exceeds the width")."""
    prob = dl.problems.factorization(8, 8, seed=0, reduction="sum")
    prob = dl.Factorization(prob.target / np.linalg.norm(prob.target, 2), "sum")
    net = dl.DeepLinearNetwork(2, 8, init_scale=0.5, seed=0)
    res, weights = run(net, prob, dl.GD(lr=0.1), 10, 2, track="full")
    assert res.tracking["angles_right"].shape[-1] == 0
    check_values(res, weights, "full")
    with pytest.raises(ValueError, match="2r"):
        dl.train(net, prob, dl.GD(lr=0.1), 5, progress=False, track="structured")


def test_float32_network():
    """float32 weights are tracked in double: exact SVD of the float32 values."""
    prob = make_problem("factorization", seed=6)
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=6, dtype=np.float32)
    res, weights = run(net, prob, dl.GD(lr=0.1), 20, 5, track="full")
    check_values(res, weights, "full")


def test_records_last_step_on_convergence():
    prob = make_problem("factorization", seed=7)
    net = dl.DeepLinearNetwork(2, D, init_scale=0.5, seed=7)
    res = dl.train(net, prob, dl.GD(lr=0.5), 5000, tol=1e-3, progress=False, track=dl.Tracking("structured", every=100))
    assert res.status == "converged"
    assert res.tracking["steps"][-1] == res.n_steps and res.n_steps % 100 != 0


# -- 2. structured == full, through a crossing ----------------------------------------------------

def crossing_example(seed=0, net_seed=1):
    """MATH.md §2: d=30, r=3, L=3, ε=1, Gaussian rank-3 Φ with ‖Φ‖₂ = 1, "sum" reduction."""
    rng = np.random.default_rng(seed)
    prob = dl.Factorization(unit_target(30, 3, rng), reduction="sum")
    net = dl.DeepLinearNetwork(3, 30, init_scale=1.0, seed=net_seed)
    return prob, net


def test_structured_equals_full_through_a_crossing():
    prob, net = crossing_example()
    basis = invariant_basis(net, prob)
    steps, lr, L = 1000, 0.1, 3
    blocks, last = [], {}

    def grab(step, n):  # singular values of every 2r × 2r block, every step
        blocks.append([np.linalg.svd(b, compute_uv=False) for b in structure_residual(n, basis)["blocks"]])
        if step == 100:
            last["w"] = n.weights

    full = dl.train(net.copy(), prob, dl.GD(lr=lr), steps, progress=False, track=dl.Tracking("full", basis=basis), callback=grab, callback_every=1)
    struct = dl.train(net.copy(), prob, dl.GD(lr=lr), steps, progress=False, track=dl.Tracking("structured", verify_every=97))
    sf, ss = full.tracking["singular_values"], struct.tracking["singular_values"]
    assert sf.shape == ss.shape == (steps + 1, L, 30)
    err = np.max(np.abs(sf - ss) / sf[:, :, :1])
    assert err <= 1e-10, err
    assert struct.tracking["verify_error"] <= 1e-12

    # the crossing happens: a block value of W_1 and of W_L changes side of ρ(t)
    rho = rho_schedule(1.0, lr, L, steps, reduction_constant=1.0)
    side = np.sign(np.array(blocks)[1:] - rho[1:, None, None])  # t ≥ 1 (t = 0: all equal ε)
    crossed = np.any(side[1:] != side[:-1], axis=0)                # layers × 2r
    assert crossed[0].any() and crossed[-1].any(), crossed
    when = [int(np.argmax(side[1:, l, i] != side[:-1, l, i])) + 2 for l in (0, L - 1)
            for i in range(6) if crossed[l, i]]
    log.info("crossings of ρ (steps): %s", when)

    # ... and the full-mode angles stay at round-off through it (NaN only at t = 0)
    for name in ("angles_right", "angles_left", "angles_align"):
        a = full.tracking[name]
        assert np.all(np.isnan(a[0]))
        assert np.all(np.isfinite(a[1:])) and a[1:].max() < 1e-6, (name, np.nanmax(a[1:]))
    # whereas before the crossings (t = 100: the lower block values are below ρ) the top-2r
    # singular directions by sorted index are not the invariant subspace
    _, s, vt = np.linalg.svd(last["w"][0])
    assert np_principal_angles(basis.V[0], vt[:6].T).max() > 0.1


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.5, False, 0.0), (0.9, False, 0.0), (0.5, True, 0.0), (0.9, True, 0.0),
    (0.0, False, 0.05), (0.5, False, 0.05), (0.5, True, 0.05)])
def test_structured_equals_full_with_momentum_and_weight_decay(momentum, nesterov, weight_decay):
    prob, net = crossing_example()
    opt = dl.GD(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    full = dl.train(net.copy(), prob, opt, 1000, progress=False, track="full")
    struct = dl.train(net.copy(), prob, opt, 1000, progress=False, track=dl.Tracking("structured", verify_every=100))
    assert full.status == struct.status == "max_steps"
    assert full.final_loss < 0.1 * full.train_loss[0]
    sf, ss = full.tracking["singular_values"], struct.tracking["singular_values"]
    assert np.max(np.abs(sf - ss) / sf[:, :, :1]) <= 1e-10
    assert struct.tracking["verify_error"] <= 1e-12
    a = full.tracking["angles_right"][1:]
    assert np.nanmax(a) < 1e-6


def test_structured_continues_a_run():
    """A second ``train`` call on a trained network (fresh optimizer state): ρ restarts from the
    current bulk value.  (It used to restart from ε: errors of 0.4.)"""
    prob, net = crossing_example()
    opt = dl.GD(lr=0.1, momentum=0.5)
    dl.train(net, prob, opt, 150, progress=False)
    full = dl.train(net.copy(), prob, opt, 200, progress=False, track="full")
    struct = dl.train(net.copy(), prob, opt, 200, progress=False, track="structured")
    sf, ss = full.tracking["singular_values"], struct.tracking["singular_values"]
    assert np.max(np.abs(sf - ss) / sf[:, :, :1]) <= 1e-10

    # weights that left the invariant form (Adam) are refused
    dl.train(net, prob, dl.Adam(lr=1e-2), 20, progress=False)
    with pytest.raises(ValueError, match="invariant form"):
        dl.train(net, prob, dl.GD(lr=0.1), 5, progress=False, track="structured")


def test_structured_refuses_what_it_cannot_do():
    prob = make_problem("factorization")
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=0)
    for opt in (dl.Adam(lr=1e-3), dl.RMSProp(lr=1e-3)):
        with pytest.raises(ValueError, match="structured"):
            dl.train(net.copy(), prob, opt, 5, progress=False, track="structured")
    comp = make_problem("completion")
    with pytest.raises(ValueError, match="structured"):
        dl.train(net.copy(), comp, dl.GD(lr=0.1), 5, progress=False, track=dl.Tracking("structured", basis=invariant_basis(net, comp, method="gradient", rank=R)))
    gauss = dl.DeepLinearNetwork(3, D, init="gaussian", init_scale=0.5, seed=0)
    with pytest.raises(ValueError):
        dl.train(gauss, prob, dl.GD(lr=0.1), 5, progress=False, track="structured")
    rect = dl.DeepLinearNetwork(2, dims=[D, 8, D], init_scale=0.5, seed=0)
    with pytest.raises(ValueError, match="structured"):
        dl.train(rect, prob, dl.GD(lr=0.1), 5, progress=False, track="structured")


def test_gaussian_init_full_tracking_without_angles():
    """A Gaussian init has no closed-form invariant basis: "full" records values, no angles
    (it used to measure angles against a non-orthonormal "basis")."""
    prob = make_problem("factorization", seed=8)
    net = dl.DeepLinearNetwork(3, D, init="gaussian", init_scale=0.5, seed=8)
    res, weights = run(net, prob, dl.GD(lr=0.1), 12, 4, track="full")
    assert res.tracking["angles_right"].shape[-1] == 0
    check_values(res, weights, "full")


@pytest.mark.parametrize("make, match", [
    (lambda: "svd", "track"), (lambda: dl.Tracking("full", every=0), "every"),
    (lambda: dl.Tracking("full", k=0), "k"), (lambda: dl.Tracking("incremental", tol=0.0), "tol"),
    (lambda: dl.Tracking("incremental", max_iter=0), "max_iter"),
    (lambda: dl.Tracking("structured", verify_every=-1), "verify_every"),
    (lambda: dl.Tracking("full", tol=1e-8), "tol"), (lambda: dl.Tracking("structured", max_iter=3), "max_iter"),
    (lambda: dl.Tracking("incremental", verify_every=2), "verify_every"),
    (lambda: dl.Tracking("incremental", k=D + 1), "track_k")])
def test_bad_tracking_arguments(make, match):
    prob = make_problem("factorization")
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=0)
    with pytest.raises(ValueError, match=match):
        dl.train(net, prob, dl.GD(lr=0.1), 5, progress=False, track=make())
    with pytest.raises(TypeError, match="basis"):
        dl.Tracking("full", basis=[np.eye(D)])
    with pytest.raises(TypeError, match="track"):
        dl.train(net, prob, dl.GD(lr=0.1), 5, progress=False, track=5)


# -- 6. incremental against full SVDs -------------------------------------------------------------

INCREMENTAL_RUNS = {
    # name: (kind, d, r, L, ε, lr, steps, track_every)
    "factorization small eps": ("factorization", 20, 2, 3, 0.1, 0.5, 500, 1),
    "factorization every 5": ("factorization", 20, 2, 3, 0.1, 0.5, 500, 5),
    "factorization L=2": ("factorization", 16, 2, 2, 0.3, 0.2, 300, 1),
    "factorization L=4": ("factorization", 16, 2, 4, 0.5, 0.5, 400, 1),
}


@pytest.mark.parametrize("name", list(INCREMENTAL_RUNS))
def test_incremental_matches_full(name):
    kind, d, r, L, eps, lr, steps, every = INCREMENTAL_RUNS[name]
    prob = make_problem(kind, d=d, r=r, seed=11)
    net = dl.DeepLinearNetwork(L, d, init_scale=eps, seed=11)
    full = dl.train(net.copy(), prob, dl.GD(lr=lr), steps, progress=False, track=dl.Tracking("full", every=every))
    inc = dl.train(net.copy(), prob, dl.GD(lr=lr), steps, progress=False, track=dl.Tracking("incremental", every=every, k=2 * r))
    ti, tf = inc.tracking, full.tracking
    np.testing.assert_array_equal(ti["steps"], tf["steps"])
    s_full = tf["singular_values"]
    err = np.max(np.abs(ti["singular_values"] - s_full[:, :, :2 * r]) / s_full[:, :, :1])
    n_rec = len(ti["steps"])
    log.info("incremental %s: %d records x %d layers, %d fallbacks, %d iterations, max value "
             "error %.1e, max residual %.1e", name, n_rec, L, ti["fallbacks"], ti["iterations"], err,
             ti["max_residual"])
    assert err <= 1e-10, err
    assert ti["fallbacks"] < n_rec
    assert 0.0 < ti["max_residual"] <= 1e-10       # some records converged without fallback
    assert ti["iterations"] >= n_rec - 1            # at least one iteration per warm record


def test_incremental_warm_start_stays_orthonormal():
    """Regression: every record started from the previous one's Ritz vectors as they were, so
    their round-off accumulated from record to record (||VᵀV − I|| of the warm start grew by
    ~1.1e-16 per record: 1.2e-13 after these 1000 records, 6e-13 after 5000), and with it the
    error of Ritz values computed for a basis taken to be orthonormal.  Each record now makes its
    warm start orthonormal again, so the error stays at one record's round-off."""
    d, r, L, steps = 20, 2, 3, 1000
    prob = make_problem("factorization", d=d, r=r, seed=11)
    net = dl.DeepLinearNetwork(L, d, init_scale=0.1, seed=11)
    res = dl.train(net, prob, dl.GD(lr=0.5), steps, progress=False,
                   track=dl.Tracking("incremental", k=2 * r))
    assert res.tracking["fallbacks"] < len(res.tracking["steps"])
    warm = net._tracking_carry.warm["inc_v"]  # the start block of the next record, per layer
    assert len(warm) == L
    for v in warm:
        v = np.asarray(v)
        assert v.shape[1] >= 2 * r
        assert np.abs(v.T @ v - np.eye(v.shape[1])).max() <= 2e-15 * d


def test_incremental_on_completion():
    """Completion with k = 2r has no gap after the 2r-th value and no flat bulk: the values are
    certified by the run bounds on the Krylov basis, without falling back to a full SVD."""
    prob = make_problem("completion", seed=12)
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=12)
    full = dl.train(net.copy(), prob, dl.GD(lr=0.1), 100, progress=False, track="full")
    inc = dl.train(net.copy(), prob, dl.GD(lr=0.1), 100, progress=False, track=dl.Tracking("incremental", k=2 * R))
    s_full = full.tracking["singular_values"]
    err = np.max(np.abs(inc.tracking["singular_values"] - s_full[:, :, :2 * R]) / s_full[:, :, :1])
    log.info("incremental completion: 101 records x 3 layers, %d fallbacks, %d iterations",
             inc.tracking["fallbacks"], inc.tracking["iterations"])
    assert err <= 1e-10
    assert inc.tracking["fallbacks"] <= 3


# Runs where the warm start alone is far from converged (subspace iteration with a residual
# check fell back to a full SVD at almost every record of the first and second one): the
# tracker must stay within 1e-10 of NumPy at every record and fall back rarely (counts are
# deterministic; the bounds leave room for another BLAS's round-off deciding a borderline record).
HARD_RUNS = {
    # name: (kind, d, r, L, init, ε, optimizer, steps, most iterations per record)
    # orthogonal init: all values equal at step 0, the 2r learning values leave the flat bulk
    # ρ(t) slowly (mean reduction, lr·c = 1e-4 as in the d = 1000 benchmark)
    "factorization from orthogonal init": ("factorization", 50, 3, 3, "orthogonal", 1.0,
                                           dl.GD(lr=0.25), 300, 3.0),
    "factorization faster": ("factorization", 50, 3, 3, "orthogonal", 1.0, dl.GD(lr=2.5), 300, 3.5),
    "factorization Adam": ("factorization", 40, 3, 3, "orthogonal", 1.0, dl.Adam(lr=1e-2), 300, 6.0),
    "factorization gaussian init": ("factorization", 50, 3, 3, "gaussian", 1.0, dl.GD(lr=2.5), 300, 6.0),
    "completion": ("completion", 50, 3, 3, "orthogonal", 1.0, dl.GD(lr=2.5), 300, 6.0),
    "completion Adam": ("completion", 50, 3, 3, "orthogonal", 1.0, dl.Adam(lr=1e-3), 300, 7.0),
}


@pytest.mark.parametrize("name", list(HARD_RUNS))
def test_incremental_hard_runs(name):
    kind, d, r, L, init, eps, opt, steps, most = HARD_RUNS[name]
    gen = dl.problems.factorization if kind == "factorization" else \
        (lambda d, r, seed: dl.problems.completion(d, r, 0.3, seed=seed))
    prob = gen(d, r, seed=0)
    net = dl.DeepLinearNetwork(L, d, init=init, init_scale=eps, seed=0)
    res, weights = run(net, prob, opt, steps, track="incremental", track_k=2 * r)
    tr = res.tracking
    err = check_values(res, weights, "incremental", 2 * r)
    n_rec = len(tr["steps"]) * L
    log.info("incremental %s: %d records, %.2f block steps per record, %d fallbacks, max value "
             "error %.1e, max residual %.1e", name, n_rec, tr["iterations"] / n_rec, tr["fallbacks"],
             err, tr["max_residual"])
    assert tr["fallbacks"] <= n_rec // 100
    assert tr["iterations"] <= most * n_rec
    if tr["angles_right"].shape[-1] and not np.all(np.isnan(tr["angles_right"])):
        # angles recorded (Adam: the 2r-th and (2r+1)-th values differ): Ritz vectors with
        # residuals <= tol·s_1, so the angles are those of NumPy's top 2r to tol·s_1 / separation
        basis = invariant_basis(net, prob)
        for i, step in enumerate(tr["steps"]):
            for l, w in enumerate(weights[step]):
                if np.all(np.isnan(tr["angles_right"][i, l])):
                    continue
                _, s, vt = np.linalg.svd(w)
                sep = s[2 * r - 1] - s[2 * r]
                np.testing.assert_allclose(tr["angles_right"][i, l],
                                           np_principal_angles(basis.V[l], vt[:2 * r].T),
                                           atol=1e-9 + 2e-10 * s[0] / sep, rtol=0)


@pytest.mark.parametrize("init, most", [("orthogonal", 1), ("gaussian", 8)])
def test_incremental_first_record_without_full_svd(init, most):
    """The first record runs the block Krylov iteration from random directions, not a full SVD
    (whose d x d workspace was the memory peak of a tracked run): at an orthogonal init every
    block is invariant (all singular values equal) and one block step per layer certifies the
    values; from a Gaussian init it converges in a few.  No fallback, values equal NumPy's."""
    d, r, L = 60, 3, 3
    prob = dl.problems.factorization(d, r, seed=4)
    net = dl.DeepLinearNetwork(L, d, init=init, init_scale=1.0, seed=4)
    weights = net.weights
    res = dl.train(net, prob, dl.GD(lr=0.1), 0, progress=False, track=dl.Tracking("incremental", k=2 * r))
    tr = res.tracking
    np.testing.assert_array_equal(tr["steps"], [0])
    check_values(res, {0: weights}, "incremental", 2 * r)
    assert tr["fallbacks"] == 0
    assert L <= tr["iterations"] <= most * L   # block steps ran (a full SVD takes none)
    assert tr["max_residual"] <= 1e-10


def rank_one_climb(d, lr, seed=0, top=3.0):
    """One layer W(t) = W0 + top·(1 − (1 − lr)^t)·u vᵀ (GD on a "sum" factorization of depth 1):
    W0 has the singular values 1 … 0.05 and (u, v) is its last singular pair, so that value rises
    from the bottom of the spectrum to 0.05 + top, while the top singular vectors of W0 stay exact
    singular vectors of every W(t) (no residual can reveal the riser: only new directions can)."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((d, d)))[0]
    v = np.linalg.qr(rng.standard_normal((d, d)))[0]
    w0 = (u * np.linspace(1.0, 0.05, d)) @ v.T
    target = w0 + top * np.outer(u[:, -1], v[:, -1])
    return dl.DeepLinearNetwork.from_weights([w0]), dl.Factorization(target, reduction="sum")


@pytest.mark.parametrize("d, lr, k, steps", [(60, 0.5, 4, 30), (200, 0.5, 6, 30), (1000, 0.5, 20, 10),
                                             (60, 0.005, 4, 100), (200, 0.003, 6, 150)])
def test_incremental_detects_a_value_rising_above_the_tracked_ones(d, lr, k, steps):
    """A singular value from the bottom of the spectrum rises above the k tracked ones: in one
    step (lr = 0.5: 0.05 → 1.55 > s_1 = 1), or gradually (a rank or two per step).  The tracked
    vectors stay exact singular vectors, so their residuals are zero: what reveals the riser is
    the random directions, expanded by the block steps every record does (the jump), or the extra
    Ritz vectors that follow the values just below the k-th (the gradual riser).  Every record
    must still equal NumPy's top k."""
    net, prob = rank_one_climb(d, lr)
    res, weights = run(net, prob, dl.GD(lr=lr), steps, track="incremental", track_k=k)
    check_values(res, weights, "incremental", k)
    sv = res.tracking["singular_values"][:, 0, 0]
    assert sv[0] == pytest.approx(1.0) and sv[-1] > 1.1      # the riser is on top at the end


@pytest.mark.parametrize("k", [4, 6])
def test_incremental_through_a_crossing(k):
    """MATH.md §2's crossing example: lower block values start under ρ(t) and cross it upwards
    (t ≈ 120–470), entering the top k, which held bulk values (all equal ρ) before."""
    prob, net = crossing_example()
    full = dl.train(net.copy(), prob, dl.GD(lr=0.1), 1000, progress=False, track="full")
    inc = dl.train(net.copy(), prob, dl.GD(lr=0.1), 1000, progress=False, track=dl.Tracking("incremental", k=k))
    sf, si = full.tracking["singular_values"], inc.tracking["singular_values"]
    assert np.max(np.abs(si - sf[:, :, :k]) / sf[:, :, :1]) <= 1e-10
    assert inc.tracking["fallbacks"] == 0


def test_incremental_clustered_spectrum():
    """Tight clusters of singular values (exact ties split by 1e-9 noise, a cluster of width 2e-7
    cut by the k-th value): the vectors inside a cluster are not determined, its values are, and
    are certified as a whole, without fallbacks."""
    rng = np.random.default_rng(3)
    d, k = 40, 5
    u = np.linalg.qr(rng.standard_normal((d, d)))[0]
    v = np.linalg.qr(rng.standard_normal((d, d)))[0]
    s0 = np.concatenate([[3.0, 3.0, 3.0, 2.0 + 1e-7, 2.0, 2.0 - 1e-7, 2.0 - 1e-7],
                         np.full(13, 1.5), np.linspace(1.0, 0.1, d - 20)])
    s1 = s0 * 1.1          # the clusters move together
    noise = rng.standard_normal((d, d))
    target = (u * s1) @ v.T + 1e-9 * noise / np.linalg.norm(noise, 2)
    net = dl.DeepLinearNetwork.from_weights([(u * s0) @ v.T])
    res, weights = run(net, dl.Factorization(target, reduction="sum"), dl.GD(lr=0.05), 80,
                       track="incremental", track_k=k)
    check_values(res, weights, "incremental", k)
    assert res.tracking["fallbacks"] == 0


# -- 7. save / load ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["full", "incremental", "structured"])
def test_tracking_survives_save_load(tmp_path, mode):
    prob = make_problem("factorization", seed=9)
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=9)
    res = dl.train(net, prob, dl.GD(lr=0.1), 25, progress=False, track=dl.Tracking(mode, every=3, **({"verify_every": 2} if mode == "structured" else {})))
    path = tmp_path / f"{mode}.npz"
    res.save(path)
    back = dl.Result.load(path)
    assert set(back.tracking) == set(res.tracking)
    for key, val in res.tracking.items():
        got = back.tracking[key]
        if isinstance(val, np.ndarray):
            assert got.dtype == val.dtype and got.shape == val.shape, key
            np.testing.assert_array_equal(got, val)            # NaN == NaN here
        else:
            assert got == val and type(got) is type(val), key
    assert back.tracking["mode"] == mode
    np.testing.assert_array_equal(back.train_loss, res.train_loss)


def test_structured_on_a_diverging_run():
    """ρ(t) overflowing is not an error of its own (it used to raise OverflowError before the
    first step): the run stops as diverged, with the records up to there."""
    prob = make_problem("factorization", seed=13)
    net = dl.DeepLinearNetwork(3, D, init_scale=1.0, seed=13)
    with pytest.warns(dl.DivergenceWarning):
        res = dl.train(net, prob, dl.GD(lr=3.0), 200, progress=False, track="structured")
    assert res.status == "diverged"
    tr = res.tracking
    assert len(tr["steps"]) == res.n_steps and np.all(np.isfinite(tr["singular_values"]))


# -- consecutive calls on one network ------------------------------------------------------------

def test_incremental_second_call_starts_from_the_first():
    """A tracked call leaves its last record and warm starts to the next call on the same
    network while the weights are unchanged and the settings the same: that call's record of
    step 0 is the last one (no block step for it), its next records start from the warm starts,
    and every record equals NumPy's values.  Other settings, or a change of the weights outside
    training (through the core), start afresh."""
    d, r, L = 60, 3, 3
    prob = dl.problems.factorization(d, r, seed=5)
    net = dl.DeepLinearNetwork(L, d, init_scale=1.0, seed=5)
    opt, trk = dl.GD(lr=0.1), dl.Tracking("incremental", k=2 * r)
    dl.train(net, prob, opt, 20, progress=False, track=trk)
    w = net.weights
    cold = dl.train(net.copy(), prob, opt, 0, progress=False, track=trk)
    carried = dl.train(net, prob, opt, 0, progress=False, track=trk)
    for res in (cold, carried):
        check_values(res, {0: w}, "incremental", 2 * r)
        assert res.tracking["fallbacks"] == 0
    assert cold.tracking["iterations"] > 0 and carried.tracking["iterations"] == 0
    seen = {}
    more = dl.train(net, prob, opt, 6, progress=False, track=dl.Tracking("incremental", k=2 * r, every=2),
                    callback=lambda t, n: seen.__setitem__(t, n.weights), callback_every=2)
    check_values(more, seen, "incremental", 2 * r)
    w = net.weights
    # other settings (k): computed afresh, values still right
    other = dl.train(net, prob, opt, 0, progress=False, track=dl.Tracking("incremental", k=r))
    check_values(other, {0: w}, "incremental", r)
    assert other.tracking["iterations"] > 0
    # weights written outside training: computed afresh
    dl.train(net, prob, opt, 0, progress=False, track=trk)
    net._writable_core().set_weight(0, np.ascontiguousarray(w[0]))
    again = dl.train(net, prob, opt, 0, progress=False, track=trk)
    check_values(again, {0: w}, "incremental", 2 * r)
    assert again.tracking["iterations"] > 0


def test_structured_second_call_continues_from_the_bulk_value_of_the_first(monkeypatch):
    """A second "structured" call on a network whose weights only its previous structured call
    changed continues from that call's bulk value (no structure fit of the weights) and equals
    "full" tracking; after a write outside training the weights are fitted again."""
    import deeplinear.parsimony as parsimony

    prob, net = crossing_example()
    opt = dl.GD(lr=0.1, momentum=0.5)
    dl.train(net, prob, opt, 150, progress=False, track="structured")
    fitted = []
    real = parsimony.structure_residual
    monkeypatch.setattr(parsimony, "structure_residual", lambda *a: fitted.append(1) or real(*a))
    twin = net.copy()
    struct = dl.train(net, prob, opt, 200, progress=False, track="structured")
    assert not fitted
    full = dl.train(twin, prob, opt, 200, progress=False, track="full")
    sf, ss = full.tracking["singular_values"], struct.tracking["singular_values"]
    assert np.max(np.abs(sf - ss) / sf[:, :, :1]) <= 1e-10
    net._writable_core().set_weight(0, net.weight(1))  # a write (same values) outside training
    dl.train(net, prob, opt, 5, progress=False, track="structured")
    assert fitted


@pytest.mark.parametrize("mode", ["incremental", "structured"])
def test_records_do_not_depend_on_the_thread_count(mode):
    """A record runs the layers one after the other, every product on the library's threads.
    At this size the library runs every product on one thread whatever the count: on one
    thread and on two the records are the same bit for bit and equal NumPy's SVD of the
    weights, and the thread count is what it was after the call.  (Where the library threads
    the products, their last bits may differ with the thread count, the step's as well.)"""
    d, r, L = 24, 2, 3
    prob = make_problem("factorization", d=d, r=r, seed=5)
    before = dl.get_num_threads()
    out = []
    try:
        for threads in (1, 2):
            dl.set_num_threads(threads)
            net = dl.DeepLinearNetwork(L, d, init_scale=0.5, seed=5)
            res, weights = run(net, prob, dl.GD(lr=0.5), 40, every=3, track=mode)
            assert dl.get_num_threads() == threads
            out.append((res.tracking, weights))
    finally:
        dl.set_num_threads(before)
    (first, w_first), (second, w_second) = out
    for step in w_first:  # same weights: small products run on one thread either way
        for a, b in zip(w_first[step], w_second[step]):
            np.testing.assert_array_equal(a, b)
    for key in ("singular_values", "angles_right", "angles_left", "angles_align"):
        np.testing.assert_array_equal(first[key], second[key])
    assert first["iterations"] == second["iterations"]
    k = None if mode == "structured" else 2 * r
    for i, step in enumerate(first["steps"]):
        for l, w in enumerate(w_first[step]):
            s = np.linalg.svd(w, compute_uv=False)
            np.testing.assert_allclose(first["singular_values"][i, l], expected_values(s, mode, k),
                                       rtol=0, atol=1e-10 * s[0])
