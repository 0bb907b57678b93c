"""Exact compression and reduced dynamics (MATH.md §2–§3): ``dl.compress``, ``dl.train`` of a
``CompressedNetwork``, ``lift``, ``singular_values``, ``dl.reduced_network`` and
``sample_overlap``, against explicit wide networks.

* compressed (blocks + ρ) vs wide: every loss to 1e-10 relative over 2000–6000 steps and the
  lifted weights to 1e-10 (‖ΔW_l‖/‖W_l‖), depths 2–5, ε = 1e-3 … 1, "sum" and "mean", weight
  decay, heavy-ball and Nesterov momentum, every run moving the loss by a large factor; also
  when the network is compressed late (after wide training) and both continue;
* the reference-style compression (blocks only, no ρ, a NumPy loop here) differs from the wide
  loss by exactly ``(c/2)(d−2r)ρ^{2L} + (λ/2)L(d−2r)ρ²`` (ρ from ``dl.rho_schedule``);
* ``singular_values()`` equal ``numpy.linalg.svd`` of the wide layers, across block/ρ crossings;
* inexact cases (completion, Adam, Gaussian init): ``ApproximationWarning``, ``exact`` False,
  training runs, the reported loss is the approximation's own wide loss, and the gap to the wide
  network is measured (printed with ``-s``) and asserted non-zero;
* reduced dynamics with the overlap K of an explicit init: pathwise equal to the wide network;
  with sampled K ("bartlett", "frame"): equal in distribution to 200 wide runs from fresh Haar
  inits (two-sample KS), while wrong samplers are rejected in the same setup;
* ``sample_overlap``: ‖K‖₂ ≤ 1 and the law of a uniformly random frame (KS, small d).

Step sizes are written as ``η c`` (the effective step, the same for "sum" and "mean") and weight
decays as ``λ / c``, so every run is in a comparable regime whatever the reduction.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

import deeplinear as dl
from deeplinear.compression import sample_overlap
import oracle

try:
    from scipy import stats
except ImportError:                      # only the KS tests need SciPy
    stats = None
needs_scipy = pytest.mark.skipif(stats is None, reason="the distribution tests need scipy.stats")

RTOL = 1e-10
S3 = np.array([1.0, 0.8, 0.6])          # singular values of the default rank-3 target


# -- helpers ----------------------------------------------------------------------------------------

def frames(d, r, seed):
    """Two independent random d × r orthonormal frames (C, R)."""
    rng = np.random.default_rng(seed)
    C = np.linalg.qr(rng.standard_normal((d, r)))[0]
    R = np.linalg.qr(rng.standard_normal((d, r)))[0]
    return C, R


def factorization(d, reduction, seed=0, S=S3):
    """``Φ = C diag(S) Rᵀ`` with random frames; returns (problem, C, R)."""
    C, R = frames(d, len(S), seed)
    return dl.Factorization((C * S) @ R.T, reduction=reduction), C, R


def c_of(d, reduction):
    return 1.0 if reduction == "sum" else 1.0 / d ** 2


def gd(c, lr, *, mu=0.0, nesterov=False, wd=0.0):
    """``dl.GD`` with effective step ``η c = lr`` and ``λ = wd · c``."""
    return dl.GD(lr=lr / c, momentum=mu, nesterov=nesterov, weight_decay=wd * c)


def max_rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b) / np.abs(b)))


def weight_rel(ws_a, ws_b):
    """max_l ‖A_l − B_l‖_F / ‖B_l‖_F."""
    return max(float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(ws_a, ws_b))


def sv_rel(sv_a, sv_b):
    """max over layers of max_i |a_i − b_i| / b_max (both sorted descending)."""
    return max(float(np.max(np.abs(a - b)) / b[0]) for a, b in zip(sv_a, sv_b))


def wide_svs(net):
    return [np.linalg.svd(w, compute_uv=False) for w in net.weights]


def train(net, prob, opt, steps):
    return dl.train(net, prob, opt, steps, progress=False)


def report(name, **values):
    print(f"[{name}] " + ", ".join(f"{k}={v:.3e}" for k, v in values.items()))


# -- 1. compressed (with ρ) vs wide -----------------------------------------------------------------

# (d, L, ε, reduction, η c, μ, nesterov, λ/c, steps, minimum loss drop factor, target spectrum).
# The ε = 1e-3 runs use a spread spectrum and stop once its top direction is learned (loss
# ÷ ~80), for two reasons measured on the wide network alone: (i) once every direction is
# learned the loss falls to (c/2)(d−2r)ρ^{2L} ≈ 1e-17 of its start, where the wide
# ‖W_{L:1} − Φ‖² is round-off of O(1) entries (wide vs compressed then differ by ~1e-8);
# (ii) at L = 3 the escape of a *second* direction is ill-conditioned: the wide run started
# from weights perturbed by 1e-15 (relative) differs from itself by 1e-11…4e-11 there, and
# wide vs compressed by 1e-11…1.3e-10, i.e. the wide network's own round-off, not compression.
S_SPREAD = np.array([1.0, 0.1, 0.05])
EXACT_CASES = {
    "L2-eps1e-3-sum":           (40, 2, 1e-3, "sum", 0.01, 0.0, False, 0.0, 2000, 50, S_SPREAD),
    "L2-eps1e-3-mean":          (50, 2, 1e-3, "mean", 0.01, 0.0, False, 0.0, 2000, 50, S_SPREAD),
    "L3-eps1e-3-sum":           (30, 3, 1e-3, "sum", 0.5, 0.0, False, 0.0, 6000, 50, S_SPREAD),
    "L3-eps1e-3-mean":          (60, 3, 1e-3, "mean", 0.5, 0.0, False, 0.0, 6000, 50, S_SPREAD),
    "L3-eps0.1-sum-wd":         (50, 3, 0.1, "sum", 0.2, 0.0, False, 1e-3, 3000, 1e2, S3),
    "L4-eps0.5-mean-wd":        (40, 4, 0.5, "mean", 0.1, 0.0, False, 1e-3, 3000, 1e2, S3),
    "L5-eps1-sum-heavyball":    (30, 5, 1.0, "sum", 0.01, 0.9, False, 0.0, 2000, 1e2, S3),
    "L5-eps0.7-mean":           (40, 5, 0.7, "mean", 0.1, 0.0, False, 0.0, 3000, 1e2, S3),
    "L4-eps1-mean-nesterov-wd": (50, 4, 1.0, "mean", 0.01, 0.9, True, 1e-3, 2000, 1e2, S3),
    "L2-eps0.3-sum-nesterov":   (40, 2, 0.3, "sum", 0.02, 0.9, True, 0.0, 2000, 1e2, S3),
    "L3-eps1e-2-mean-hb-wd":    (60, 3, 1e-2, "mean", 0.05, 0.8, False, 1e-4, 3000, 1e2, S3),
}


@pytest.mark.parametrize("case", list(EXACT_CASES), ids=list(EXACT_CASES))
def test_compressed_equals_wide(case):
    d, L, eps, red, lr, mu, nest, wd, steps, drop, S = EXACT_CASES[case]
    prob, _, _ = factorization(d, red, seed=L, S=S)
    c = c_of(d, red)
    opt = gd(c, lr, mu=mu, nesterov=nest, wd=wd)
    net = dl.DeepLinearNetwork(L, d, init_scale=eps, seed=10 + L)
    comp = dl.compress(net, prob)
    assert comp.exact and comp.rank2 == 6 and comp.width == d and comp.rho == pytest.approx(eps, rel=1e-12)
    # at init the lift is the wide network itself
    assert weight_rel(comp.lift().weights, net.weights) < 1e-12

    rw = train(net, prob, opt, steps)
    rc = train(comp, prob, opt, steps)
    assert rw.status == rc.status == "max_steps"
    lw, lc = rw.train_loss, rc.train_loss
    assert len(lw) == len(lc) == steps + 1
    assert rc.meta["exact"] and rc.meta["compressed"]
    assert lw[-1] < lw[0] / drop, f"the loss must move: {lw[0]:.3e} -> {lw[-1]:.3e}"
    err = max_rel(lc, lw)
    werr = weight_rel(comp.lift().weights, net.weights)
    report(case, drop=lw[0] / lw[-1], loss_err=err, weight_err=werr, rho=comp.rho)
    assert err < RTOL
    assert werr < RTOL
    # ρ carried by the compressed network is the bulk value of the wide layers
    rho_t = dl.rho_schedule(eps, opt.lr, L, steps, weight_decay=opt.weight_decay, reduction_constant=c,
                            momentum=mu, nesterov=nest)
    assert comp.rho == rho_t[-1]
    assert comp.steps_trained == steps


@pytest.mark.parametrize("reduction, mu, nesterov, wd", [
    ("sum", 0.0, False, 0.0),
    ("mean", 0.9, False, 1e-3),
    ("mean", 0.9, True, 0.0),
])
def test_compress_late_then_continue(reduction, mu, nesterov, wd):
    """Train wide for a while, compress the trained net, continue both: still exact."""
    d, L, eps, t0, t1 = 40, 3, 0.5, 800, 2000
    prob, _, _ = factorization(d, reduction, seed=5)
    c = c_of(d, reduction)
    opt = gd(c, 0.05 if mu == 0 else 0.005, mu=mu, nesterov=nesterov, wd=wd)
    net = dl.DeepLinearNetwork(L, d, init_scale=eps, seed=7)
    first = train(net, prob, opt, t0)
    comp = dl.compress(net, prob)            # no warning: trained weights keep the structure
    assert comp.exact
    rho_t0 = dl.rho_schedule(eps, opt.lr, L, t0, weight_decay=opt.weight_decay, reduction_constant=c,
                             momentum=mu, nesterov=nesterov)[-1]
    assert comp.rho == pytest.approx(rho_t0, rel=1e-10)
    assert weight_rel(comp.lift().weights, net.weights) < 1e-12
    rw = train(net, prob, opt, t1)           # both continue with a fresh optimizer state
    rc = train(comp, prob, opt, t1)
    assert rw.train_loss[0] == pytest.approx(first.train_loss[-1], rel=1e-14)
    assert rw.train_loss[-1] < first.train_loss[0] / 100
    err = max_rel(rc.train_loss, rw.train_loss)
    werr = weight_rel(comp.lift().weights, net.weights)
    report("late", loss_err=err, weight_err=werr, drop=first.train_loss[0] / rw.train_loss[-1])
    assert err < RTOL
    assert werr < RTOL


def test_compressed_tol_and_record_every():
    """The carried loss terms are indexed by step: recording every 7 steps and stopping at
    ``tol`` happen at the same steps as for the wide network, and ρ is taken at the stop."""
    d, L, eps = 40, 3, 0.5
    prob, _, _ = factorization(d, "sum", seed=9)
    opt = dl.GD(lr=0.1)
    net = dl.DeepLinearNetwork(L, d, init_scale=eps, seed=9)
    comp = dl.compress(net, prob)
    tol = dl.loss_and_gradients(net, prob)[0] / 300
    rw = dl.train(net, prob, opt, 5000, tol=tol, record_every=7, progress=False)
    rc = dl.train(comp, prob, opt, 5000, tol=tol, record_every=7, progress=False)
    assert rw.status == rc.status == "converged"
    assert rw.n_steps == rc.n_steps and rw.n_steps % 7 != 0
    np.testing.assert_array_equal(rc.steps, rw.steps)
    assert max_rel(rc.train_loss, rw.train_loss) < RTOL
    rho = dl.rho_schedule(eps, opt.lr, L, rw.n_steps)
    assert comp.rho == rho[-1]
    assert weight_rel(comp.lift().weights, net.weights) < RTOL


# -- 2. the reference's compression (no ρ) and the exact gap formula ---------------------------------

def numpy_blocks_loop(phi_t, eps, L, c, opt, steps):
    """The reference-style compressed network: only the 2r × 2r blocks, trained on
    ``(c/2)‖W̃_{L:1} − Φ̃‖² + (λ/2)Σ‖W̃_l‖²`` with the wide c (NumPy, optax update rules)."""
    k = phi_t.shape[0]
    ws = [eps * np.eye(k) for _ in range(L)]
    lam = opt.weight_decay
    upd = oracle.Optimizer(oracle.OptSettings.from_dl(opt), [w.shape for w in ws])

    def loss(ws):
        e = oracle.end_to_end(ws) - phi_t
        return 0.5 * c * np.sum(e * e) + 0.5 * lam * sum(np.sum(w * w) for w in ws)

    out = [loss(ws)]
    for _ in range(steps):
        res = c * (oracle.end_to_end(ws) - phi_t)
        grads = [oracle.product(ws, l + 1, L, k).T @ res @ oracle.product(ws, 1, l - 1, k).T + lam * ws[l - 1]
                 for l in range(1, L + 1)]
        ws = upd.step(ws, grads)
        out.append(loss(ws))
    return np.array(out)


@pytest.mark.parametrize("reduction, mu, nesterov, wd", [
    ("sum", 0.0, False, 0.0),
    ("mean", 0.0, False, 0.0),
    ("sum", 0.0, False, 1e-4),
    ("mean", 0.9, True, 1e-4),
])
def test_reference_compression_gap_formula(reduction, mu, nesterov, wd):
    d, L, eps, steps = 40, 3, 1.0, 2000
    prob, _, _ = factorization(d, reduction, seed=2)
    c = c_of(d, reduction)
    opt = gd(c, 0.1 if mu == 0 else 0.01, mu=mu, nesterov=nesterov, wd=wd)
    net = dl.DeepLinearNetwork(L, d, init_scale=eps, seed=3)
    comp = dl.compress(net, prob)
    U, V = comp.basis.U[-1], comp.basis.V[0]
    phi_t = U.T @ prob.target @ V
    ref = numpy_blocks_loop(phi_t, eps, L, c, opt, steps)
    wide = train(net, prob, opt, steps).train_loss
    rho = dl.rho_schedule(eps, opt.lr, L, steps, weight_decay=opt.weight_decay, reduction_constant=c,
                          momentum=mu, nesterov=nesterov)
    n = d - comp.rank2
    gap_data = 0.5 * c * n * rho ** (2 * L)
    gap_wd = 0.5 * opt.weight_decay * L * n * rho ** 2
    gap = gap_data + gap_wd
    assert wide[-1] < wide[0] / 100
    # the dropped terms are most of the loss late in the run: the formula is pinned to ~1e-10
    share = gap[-1] / wide[-1]
    err = float(np.max(np.abs((wide - ref) - gap) / wide))
    report(f"gap-{reduction}-mu{mu}-wd{wd}", share_end=share, share_wd=gap_wd[-1] / wide[-1], err=err)
    assert share > 0.5
    if wd:
        assert gap_wd[-1] > 0.1 * wide[-1]
    assert err < RTOL
    # and the library's compressed network reports the wide loss, not the reference's
    rc = train(comp, prob, opt, steps)
    assert max_rel(rc.train_loss, wide) < RTOL


# -- 3. singular values of the compressed network ----------------------------------------------------

def test_singular_values_across_crossings():
    """MATH.md §2's ordering pitfall: d=30, r=3, L=3, ε=1, ‖Φ‖₂=1, "sum", η=0.1, block values
    of W_1 cross ρ during the run; singular_values() must stay exact throughout."""
    d, L = 30, 3
    rng = np.random.default_rng(0)
    phi = dl.problems.low_rank_target(d, 3, rng)
    prob = dl.Factorization(phi / np.linalg.norm(phi, 2), reduction="sum")
    opt = dl.GD(lr=0.1)
    net = dl.DeepLinearNetwork(L, d, init_scale=1.0, seed=1)
    comp = dl.compress(net, prob)
    checkpoints, above, worst = [0, 50, 100, 150, 200, 250, 300, 400, 600, 1000], [], 0.0
    t = 0
    for cp in checkpoints:
        train(net, prob, opt, cp - t)
        train(comp, prob, opt, cp - t)
        t = cp
        sw, sc = wide_svs(net), comp.singular_values()
        assert all(s.shape == (d,) for s in sc)
        worst = max(worst, sv_rel(sc, sw))
        blk = np.linalg.svd(comp.blocks.weight(1), compute_uv=False)
        above.append(int(np.sum(blk > abs(comp.rho))))
    report("singular-values", err=worst)
    assert worst < RTOL
    assert len(set(above)) > 1, f"no block value crossed ρ: {above}"


def test_singular_values_momentum_weight_decay():
    d, L, steps = 50, 4, 2000
    prob, _, _ = factorization(d, "mean", seed=4)
    opt = gd(c_of(d, "mean"), 0.01, mu=0.9, wd=1e-3)
    net = dl.DeepLinearNetwork(L, d, init_scale=0.8, seed=4)
    comp = dl.compress(net, prob)
    train(net, prob, opt, steps)
    train(comp, prob, opt, steps)
    assert sv_rel(comp.singular_values(), wide_svs(net)) < RTOL


# -- 4. inexact cases: measured, not assumed ---------------------------------------------------------

def approx_loss(comp, prob, weight_decay=0.0):
    """The wide loss of the compressed approximation ``U W̃_L⋯W̃_1 Vᵀ`` (dense NumPy)."""
    A = oracle.end_to_end(comp.blocks.weights)
    W = comp.basis.U[-1] @ A @ comp.basis.V[0].T
    e = W - prob.target
    if isinstance(prob, dl.Completion):
        e = e * prob.mask
    return 0.5 * prob.c * np.sum(e * e) + 0.5 * weight_decay * sum(np.sum(w * w) for w in comp.blocks.weights)


def test_inexact_completion():
    d, L, r, steps = 40, 3, 3, 2000
    prob = dl.problems.completion(d, r, 0.5, seed=1, reduction="sum")
    prob = dl.Completion(prob.target / np.linalg.norm(prob.target, 2), prob.mask, reduction="sum")
    net = dl.DeepLinearNetwork(L, d, init_scale=0.1, seed=2)
    with pytest.raises(ValueError, match="rank"):
        dl.compress(net, prob)
    with pytest.warns(dl.ApproximationWarning, match="completion"):
        comp = dl.compress(net, prob, rank=r)
    assert not comp.exact and "completion" in comp.reason
    opt = dl.GD(lr=0.2)
    rw = train(net, prob, opt, steps)
    rc = train(comp, prob, opt, steps)
    assert not rc.meta["exact"]
    assert np.all(np.isfinite(rc.train_loss)) and rc.test_loss is not None
    assert rc.train_loss[-1] < rc.train_loss[0] / 5
    assert rw.train_loss[-1] < rw.train_loss[0] / 1000
    assert rc.train_loss[-1] == pytest.approx(approx_loss(comp, prob), rel=1e-10)
    gap = abs(rc.train_loss[-1] - rw.train_loss[-1]) / rw.train_loss[-1]
    test_gap = abs(rc.test_loss[-1] - rw.test_loss[-1]) / rw.test_loss[-1]
    report("completion", rel_loss_gap=gap, rel_test_gap=test_gap,
           max_rel_gap=max_rel(rc.train_loss, rw.train_loss))
    assert gap > 1e-6


def test_inexact_adam_on_factorization():
    d, L, steps = 40, 3, 1000
    prob, _, _ = factorization(d, "sum", seed=6)
    net = dl.DeepLinearNetwork(L, d, init_scale=0.1, seed=6)
    comp = dl.compress(net, prob)           # the basis is exact; the optimizer is not
    assert comp.exact
    opt = dl.Adam(lr=1e-3)
    rw = train(net, prob, opt, steps)
    with pytest.warns(dl.ApproximationWarning, match="adam"):
        rc = train(comp, prob, opt, steps)
    assert not rc.meta["exact"]
    assert not comp.exact                   # its blocks and ρ no longer describe a wide network
    assert np.all(np.isfinite(rc.train_loss))
    assert rc.train_loss[-1] < rc.train_loss[0] / 10
    assert rc.train_loss[-1] == pytest.approx(approx_loss(comp, prob), rel=1e-10)
    gap = abs(rc.train_loss[-1] - rw.train_loss[-1]) / rw.train_loss[-1]
    werr = weight_rel(comp.lift().weights, net.weights)
    report("adam", rel_loss_gap=gap, max_rel_gap=max_rel(rc.train_loss, rw.train_loss), lift_err=werr)
    assert gap > 1e-6
    assert werr > 1e-6
    # later GD training of it is not exact either (and does not warn again)
    assert not train(comp, prob, dl.GD(lr=0.1), 10).meta["exact"]


def test_inexact_gaussian_init():
    d, L, steps = 40, 3, 2000
    prob, _, _ = factorization(d, "sum", seed=8)
    net = dl.DeepLinearNetwork(L, d, init="gaussian", init_scale=0.1, seed=8)
    with pytest.warns(dl.ApproximationWarning, match="gaussian init"):
        comp = dl.compress(net, prob)
    assert not comp.exact
    opt = dl.GD(lr=0.2)
    # the approximation's loss at step 0 is its own wide loss (the part of Φ outside the
    # subspaces included), not the wide network's
    rc = train(comp, prob, opt, 0)
    assert rc.train_loss[0] == pytest.approx(approx_loss(comp, prob), rel=1e-12)
    rw = train(net, prob, opt, steps)
    rc = train(comp, prob, opt, steps)
    assert np.all(np.isfinite(rc.train_loss))
    assert rc.train_loss[-1] == pytest.approx(approx_loss(comp, prob), rel=1e-10)
    assert rw.train_loss[-1] < rw.train_loss[0] / 10
    gap = abs(rc.train_loss[-1] - rw.train_loss[-1]) / rw.train_loss[-1]
    report("gaussian", rel_loss_gap=gap, max_rel_gap=max_rel(rc.train_loss, rw.train_loss))
    assert gap > 1e-6


# -- 5. reduced dynamics, pathwise --------------------------------------------------------------------

def overlap_of(net, C, R, eps):
    """``K = Rᵀ O_1ᵀ ⋯ O_Lᵀ C`` with ``O_l = W_l(0)/ε``."""
    x = C
    for w in reversed(net.initial_weights()):
        x = w.T @ x / eps
    return R.T @ x


@pytest.mark.parametrize("d, L, eps, reduction, lr, mu, nesterov, wd", [
    (50, 3, 1.0, "sum", 0.05, 0.0, False, 0.0),
    (40, 2, 1e-2, "mean", 0.1, 0.0, False, 0.0),
    (60, 4, 0.6, "sum", 0.02, 0.9, False, 1e-4),
    (40, 3, 0.3, "mean", 0.02, 0.8, True, 0.0),
])
def test_reduced_pathwise(d, L, eps, reduction, lr, mu, nesterov, wd):
    steps = 1500
    prob, C, R = factorization(d, reduction, seed=d + L)
    c = c_of(d, reduction)
    opt = gd(c, lr, mu=mu, nesterov=nesterov, wd=wd)
    net = dl.DeepLinearNetwork(L, d, init_scale=eps, seed=d * L)
    K = overlap_of(net, C, R, eps)
    comp, rprob = dl.reduced_network(d, L, S3, init_scale=eps, reduction=reduction, overlap=K)
    assert isinstance(rprob, dl.ReducedFactorization) and rprob.c == c
    assert comp.basis is None
    with pytest.raises(ValueError, match="lift"):
        comp.lift()
    rw = train(net, prob, opt, steps)
    rc = train(comp, rprob, opt, steps)
    assert rw.train_loss[-1] < rw.train_loss[0] / 100
    err = max_rel(rc.train_loss, rw.train_loss)
    serr = sv_rel(comp.singular_values(), wide_svs(net))
    report(f"reduced-L{L}-eps{eps}-{reduction}", loss_err=err, sv_err=serr)
    assert err < RTOL
    assert serr < RTOL


# -- 6. reduced dynamics, in distribution ---------------------------------------------------------------
#
# d = 300, r = 3, L = 3, ε = 1, "sum", η = 0.1, 10 steps (the loss falls 13×, the top singular
# value of W_1 goes from 1 to 1.45); Φ = C diag(3, 1, 0.3) Rᵀ fixed.  Statistics: final loss and
# top singular value of layer 1.  Measured: KS p = 0.18…0.87 for "bartlett" and "frame"; the
# sign-less QR sampler p ≤ 1e-17 and K = 0 p ≤ 1e-23.  The 200 wide runs dominate the file's
# runtime: ≈ 17 s of CPU (the rest of the file ≈ 10 s); 10 steps rather than 50–100 keep it so,
# while the wrong samplers are still rejected by 10+ orders of magnitude.

DIST_D, DIST_R, DIST_L, DIST_EPS, DIST_LR, DIST_STEPS, DIST_SEEDS = 300, 3, 3, 1.0, 0.1, 10, 200
DIST_S = np.array([3.0, 1.0, 0.3])


def dist_stats(net, prob):
    """(final loss, top singular value of layer 1) after DIST_STEPS steps of GD."""
    res = train(net, prob, dl.GD(lr=DIST_LR), DIST_STEPS)
    if isinstance(net, dl.CompressedNetwork):
        return res.train_loss[-1], net.singular_values()[0][0]
    return res.train_loss[-1], np.linalg.svd(net.weight(1), compute_uv=False)[0]


def reduced_stats(overlaps):
    out = []
    for K in overlaps:
        comp, rprob = dl.reduced_network(DIST_D, DIST_L, DIST_S, init_scale=DIST_EPS, reduction="sum",
                                         overlap=K)
        out.append(dist_stats(comp, rprob))
    return np.array(out)


@contextlib.contextmanager
def one_blas_thread():
    """The core's and NumPy's BLAS on one thread: 200 small runs gain little from a second
    thread, and on a busy machine a 2-thread OpenBLAS was measured 5–10× slower than one."""
    before = dl.get_num_threads()
    dl.set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
    finally:
        dl.set_num_threads(before)


@pytest.fixture(scope="module")
def wide_sample():
    """200 explicit wide runs (fresh Haar init per seed: the library's own) on one FIXED target."""
    C, R = frames(DIST_D, DIST_R, 12345)
    prob = dl.Factorization((C * DIST_S) @ R.T, reduction="sum")
    t0 = time.perf_counter()
    with one_blas_thread():
        out = np.array([dist_stats(dl.DeepLinearNetwork(DIST_L, DIST_D, init_scale=DIST_EPS, seed=s), prob)
                        for s in range(DIST_SEEDS)])
    report("wide-sample", seconds=time.perf_counter() - t0)
    return out


def unsigned_qr_overlap(rng):
    """Wrong: Rᵀ of a QR frame without the sign fix, R the first r axes (K₁₁ < 0 always)."""
    q, _ = np.linalg.qr(rng.standard_normal((DIST_D, DIST_R)))
    return q[:DIST_R]


def ks_pvalues(a, b):
    return [stats.ks_2samp(a[:, i], b[:, i]).pvalue for i in range(a.shape[1])]


@needs_scipy
@pytest.mark.parametrize("method", ["bartlett", "frame"])
def test_reduced_distribution_matches_wide(wide_sample, method):
    overlaps = [sample_overlap(DIST_D, DIST_R, np.random.default_rng(10_000 + s), method)
                for s in range(DIST_SEEDS)]
    red = reduced_stats(overlaps)
    p = ks_pvalues(red, wide_sample)
    report(f"ks-{method}", p_loss=p[0], p_sv1=p[1])
    # the statistics do vary with K (the test is not vacuous) ...
    assert np.std(wide_sample[:, 0]) > 1e-6 * np.mean(wide_sample[:, 0])
    assert np.std(wide_sample[:, 1]) > 1e-6 * np.mean(wide_sample[:, 1])
    assert min(p) > 1e-3


@needs_scipy
@pytest.mark.parametrize("wrong", ["unsigned_qr", "zero"])
def test_reduced_distribution_rejects_wrong_sampler(wide_sample, wrong):
    if wrong == "zero":
        overlaps = [np.zeros((DIST_R, DIST_R))] * DIST_SEEDS
    else:
        overlaps = [unsigned_qr_overlap(np.random.default_rng(s)) for s in range(DIST_SEEDS)]
    red = reduced_stats(overlaps)
    p = ks_pvalues(red, wide_sample)
    report(f"ks-wrong-{wrong}", p_loss=p[0], p_sv1=p[1])
    assert max(p) < 1e-6


# -- 7. sample_overlap -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["bartlett", "frame"])
@pytest.mark.parametrize("d, r", [(2, 1), (6, 3), (7, 2), (50, 5), (1000, 3)])
def test_sample_overlap_is_a_contraction(method, d, r):
    rng = np.random.default_rng(d * r)
    for _ in range(200):
        K = sample_overlap(d, r, rng, method)
        assert K.shape == (r, r) and np.all(np.isfinite(K))
        assert np.linalg.norm(K, 2) <= 1 + 1e-12


def test_sample_overlap_rejects_unknown_method():
    with pytest.raises(ValueError, match="method"):
        sample_overlap(10, 2, np.random.default_rng(0), "qr")


def reference_overlaps(d, r, n, seed):
    """Rᵀ X for X the first r columns of scipy's Haar matrix, R the first r axes."""
    qs = stats.ortho_group.rvs(d, size=n, random_state=seed)
    return qs[:, :r, :r]


def overlap_features(Ks):
    """Entries K₁₁, K₁₂, K₂₁, ‖K‖₂, ‖K‖_F², det K: a sample per row."""
    return np.column_stack([Ks[:, 0, 0], Ks[:, 0, 1], Ks[:, 1, 0], np.linalg.norm(Ks, 2, axis=(1, 2)),
                            np.sum(Ks ** 2, axis=(1, 2)), np.linalg.det(Ks)])


@needs_scipy
@pytest.mark.parametrize("method", ["bartlett", "frame"])
def test_sample_overlap_distribution(method):
    d, r, n = 7, 3, 3000
    rng = np.random.default_rng(99)
    ours = np.array([sample_overlap(d, r, rng, method) for _ in range(n)])
    ref = reference_overlaps(d, r, n, 7)
    p = ks_pvalues(overlap_features(ours), overlap_features(ref))
    # exact one-sample law of an entry of a uniform unit vector: K₁₁² ~ Beta(1/2, (d−1)/2)
    p_beta = stats.kstest(ours[:, 0, 0] ** 2, stats.beta(0.5, (d - 1) / 2).cdf).pvalue
    p_sign = stats.binomtest(int(np.sum(ours[:, 0, 0] > 0)), n).pvalue
    report(f"overlap-{method}", p_min=min(p), p_beta=p_beta, p_sign=p_sign)
    # 8 tests of a correct sampler: Bonferroni, family-wise false alarm ≈ 8e-4
    assert min(p + [p_beta, p_sign]) > 1e-4
    # the same checks reject a frame drawn by QR without the sign fix
    bad = np.array([np.linalg.qr(rng.standard_normal((d, r)))[0][:r] for _ in range(n)])
    assert min(ks_pvalues(overlap_features(bad), overlap_features(ref))) < 1e-6
