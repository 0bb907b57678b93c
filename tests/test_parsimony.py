"""The law of parsimony (MATH.md §2, §4): ``invariant_basis``, ``structure_residual`` and
``rho_schedule`` against independent NumPy computations and the trained core.

* every layer stays ``U_l diag(W̃_l, ρ I) V_lᵀ`` (relative off-structure residual ≤ 1e-12) over
  1000+ steps of GD, heavy-ball and Nesterov momentum, with and without weight decay; Adam breaks
  the structure (residual > 1e-3; MATH.md §1 quotes ≈ 0.36‖W‖);
* the bulk value measured on the trained weights follows ``rho_schedule`` (sum and mean
  reductions, weight decay, GD / momentum / Nesterov) to ~1e-12 relative, and so do the d − 2r
  bulk singular values of every layer; ``rho_schedule`` equals a scalar loop written from
  MATH.md §2, including the regimes of ``η(λ + c ε^{2L−2})``;
* the closed-form and gradient bases span the same space for factorization; ``U[l] = V[l+1]``,
  orthonormal columns, ``V_{1,1} ⊇ span(R) + span(Oᵀ C)``.
"""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl
from deeplinear import parsimony
from deeplinear.parsimony import InvariantBasis, invariant_basis, rho_schedule, structure_residual


def unit_target(d, r, seed):
    rng = np.random.default_rng(seed)
    phi = dl.problems.low_rank_target(d, r, rng)
    return phi / np.linalg.norm(phi, 2)          # ‖Φ‖₂ = 1


def np_principal_angles(a, b):
    """Principal angles (ascending) between orthonormal ``a`` and ``b``: arccos of the
    singular values of aᵀb, and arcsin of those of b − a aᵀb below π/4."""
    m = a.T @ b
    cos = np.clip(np.linalg.svd(m, compute_uv=False), 0.0, 1.0)
    sin = np.clip(np.linalg.svd(b - a @ m, compute_uv=False), 0.0, 1.0)[::-1]
    return np.where(cos ** 2 >= 0.5, np.arcsin(sin), np.arccos(cos))


def outside(basis_cols, x):
    """‖(I − Q Qᵀ) x‖ / ‖x‖ for orthonormal Q: how much of span(x) lies outside span(Q)."""
    return np.linalg.norm(x - basis_cols @ (basis_cols.T @ x)) / np.linalg.norm(x)


def scalar_rho(eps, lr, L, steps, *, lam=0.0, c=1.0, mu=0.0, nesterov=False):
    """MATH.md §2's recursion, written out independently of ``rho_schedule``."""
    out = [eps]
    rho, b = eps, 0.0
    for _ in range(steps):
        if mu == 0.0:
            rho = rho * (1.0 - lr * lam - lr * c * rho ** (2 * L - 2))
        else:
            grad = c * rho ** (2 * L - 1) + lam * rho
            b = mu * b + grad
            rho = rho - lr * ((mu * b + grad) if nesterov else b)
        out.append(rho)
    return np.array(out)


def test_exported_at_top_level():
    assert dl.invariant_basis is parsimony.invariant_basis
    assert dl.structure_residual is parsimony.structure_residual
    assert dl.rho_schedule is parsimony.rho_schedule
    assert dl.InvariantBasis is parsimony.InvariantBasis
    for name in ("invariant_basis", "structure_residual", "rho_schedule", "InvariantBasis"):
        assert name in dl.__all__


# -- 3. the structure over training ---------------------------------------------------------------

D, R = 16, 2

OPTIMIZERS = {
    "gd": dict(momentum=0.0),
    "gd+wd": dict(momentum=0.0, weight_decay=0.05),
    "heavy-ball": dict(momentum=0.9),
    "heavy-ball+wd": dict(momentum=0.5, weight_decay=0.05),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "nesterov+wd": dict(momentum=0.5, nesterov=True, weight_decay=0.05),
}


def trained_structure(opt_kw, *, reduction="sum", depth=3, eps=1.0, steps=1200, every=100, seed=0):
    """Train a factorization and record ``structure_residual`` (and the bulk singular values)
    every ``every`` steps.  Returns (prob, basis, records, c, lr, result)."""
    prob = dl.Factorization(unit_target(D, R, seed), reduction=reduction)
    net = dl.DeepLinearNetwork(depth, D, init_scale=eps, seed=seed + 1)
    basis = invariant_basis(net, prob)
    lr = 0.1 if reduction == "sum" else 0.1 * D * D   # the same flow for both reductions
    wd = opt_kw.get("weight_decay", 0.0)
    if reduction == "mean":
        wd = wd / (D * D)                             # same ηλ
    opt = dl.GD(lr=lr, **{**opt_kw, "weight_decay": wd})
    records = []

    def grab(step, n):
        out = structure_residual(n, basis)
        out["step"] = step
        out["sv"] = [np.linalg.svd(w, compute_uv=False) for w in n.weights]
        records.append(out)

    res = dl.train(net, prob, opt, steps, progress=False, callback=grab, callback_every=every)
    assert res.status == "max_steps" and res.final_loss < 0.5 * res.train_loss[0]
    return prob, basis, records, prob.c, lr, opt, res


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_structure_kept_by_gd_and_momentum(name):
    _, _, records, *_ = trained_structure(OPTIMIZERS[name])
    assert [r["step"] for r in records] == list(range(0, 1201, 100))
    worst = max(r["residual"].max() for r in records)
    assert worst <= 1e-12, worst


def test_structure_broken_by_adam():
    prob = dl.Factorization(unit_target(D, R, 0), reduction="sum")
    net = dl.DeepLinearNetwork(3, D, init_scale=1.0, seed=1)
    basis = invariant_basis(net, prob)
    seen = []
    dl.train(net, prob, dl.Adam(lr=1e-2), 1000, progress=False,
             callback=lambda t, n: seen.append(structure_residual(n, basis)["residual"].max()),
             callback_every=250)
    assert seen[0] <= 1e-14          # the init has the form
    assert seen[-1] > 1e-3, seen     # element-wise scaling mixes the blocks


def test_structure_residual_at_init():
    prob = dl.Factorization(unit_target(D, R, 3), reduction="sum")
    net = dl.DeepLinearNetwork(4, D, init_scale=0.3, seed=3)
    basis = invariant_basis(net, prob)
    out = structure_residual(net, basis)
    assert out["residual"].max() <= 1e-14
    np.testing.assert_allclose(out["rho"], 0.3, rtol=1e-14)
    for blk in out["blocks"]:               # U_{l,1}ᵀ ε O_l V_{l,1} = ε I
        np.testing.assert_allclose(blk, 0.3 * np.eye(2 * R), atol=1e-15)


def test_structure_residual_detects_a_perturbation():
    prob = dl.Factorization(unit_target(D, R, 4), reduction="sum")
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=4)
    basis = invariant_basis(net, prob)
    ws = net.weights
    ws[1] = ws[1] + 1e-6 * np.random.default_rng(0).standard_normal((D, D))
    out = structure_residual(dl.DeepLinearNetwork.from_weights(ws), basis)
    assert out["residual"][0] <= 1e-14 and out["residual"][2] <= 1e-14
    assert 1e-7 < out["residual"][1] < 1e-5


# -- 4. ρ(t) ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("name", ["gd", "gd+wd", "heavy-ball+wd", "nesterov", "nesterov+wd"])
def test_measured_rho_follows_rho_schedule(reduction, name):
    prob, basis, records, c, lr, opt, _ = trained_structure(OPTIMIZERS[name], reduction=reduction,
                                                            steps=1000)
    assert c == (1.0 if reduction == "sum" else 1.0 / D ** 2)
    rho = rho_schedule(basis.init_scale, lr, 3, 1000, weight_decay=opt.weight_decay,
                       reduction_constant=c, momentum=opt.momentum, nesterov=opt.nesterov)
    assert rho.shape == (1001,) and rho[0] == 1.0
    assert abs(rho[-1]) < 0.9                         # ρ moved: the check is not trivial
    for rec in records:
        t = rec["step"]
        scale = max(abs(rho[t]), 1e-3)
        np.testing.assert_allclose(rec["rho"], rho[t], rtol=0, atol=1e-12 * scale)
        # the d − 2r bulk singular values of every layer all equal |ρ(t)|
        for s in rec["sv"]:
            closest = np.sort(np.abs(s - abs(rho[t])))[:D - 2 * R]
            assert closest.max() <= 1e-12 * scale, (t, closest.max())


@pytest.mark.parametrize("L", [1, 2, 3, 5])
@pytest.mark.parametrize("kw", [dict(), dict(lam=0.05), dict(c=1 / 256), dict(mu=0.9),
                                dict(mu=0.5, lam=0.05), dict(mu=0.9, nesterov=True),
                                dict(mu=0.5, nesterov=True, lam=0.05, c=0.5)])
def test_rho_schedule_matches_scalar_recursion(L, kw):
    eps, lr, steps = 0.9, 0.3, 400
    ours = scalar_rho(eps, lr, L, steps, **kw)
    got = rho_schedule(eps, lr, L, steps, weight_decay=kw.get("lam", 0.0),
                       reduction_constant=kw.get("c", 1.0), momentum=kw.get("mu", 0.0),
                       nesterov=kw.get("nesterov", False))
    np.testing.assert_allclose(got, ours, rtol=1e-13, atol=1e-15 * eps)


def test_rho_schedule_gd_regimes():
    """GD: ρ ≥ 0 and non-increasing iff η(λ + c ε^{2L−2}) ≤ 1; exactly 0 from t = 1 at 1;
    sign flip with |ρ| shrinking in (1, 2); |ρ| growing above 2."""
    L, eps = 3, 1.0
    for lr in (0.01, 0.3, 0.999):
        rho = rho_schedule(eps, lr, L, 300)
        assert np.all(rho >= 0) and np.all(np.diff(rho) <= 0)
    rho = rho_schedule(eps, 1.0, L, 10)                  # η c ε^{2L−2} = 1
    assert rho[0] == 1.0 and np.all(rho[1:] == 0.0)
    rho = rho_schedule(eps, 0.25, L, 10, weight_decay=3.0)   # η(λ + c) = 1 with weight decay
    assert np.all(rho[1:] == 0.0)
    rho = rho_schedule(eps, 1.5, L, 1)                   # η c ε^{2L−2} = 1.5
    assert rho[1] < 0 and abs(rho[1]) < eps
    rho = rho_schedule(eps, 2.5, L, 3)                   # above 2: |ρ| grows without bound
    assert abs(rho[1]) > eps and abs(rho[2]) > abs(rho[1])
    with pytest.warns(RuntimeWarning, match="overflows"):   # overflow: inf/NaN, with a warning
        assert not np.all(np.isfinite(rho_schedule(eps, 2.5, L, 50)))
    np.testing.assert_array_equal(rho_schedule(0.7, 0.1, 2, 0), [0.7])


def test_rho_schedule_momentum_may_change_sign():
    rho = rho_schedule(1.0, 0.5, 2, 200, momentum=0.95)
    assert rho.min() < 0 < rho.max()
    np.testing.assert_allclose(rho, scalar_rho(1.0, 0.5, 2, 200, mu=0.95), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kw, match", [
    (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(depth=0), "depth"), (dict(steps=-1), "steps"),
    (dict(momentum=1.0), "momentum"), (dict(weight_decay=-0.1), "weight_decay"),
    (dict(reduction_constant=-1.0), "reduction_constant")])
def test_rho_schedule_validation(kw, match):
    args = {**dict(init_scale=1.0, lr=0.1, depth=3, steps=5), **kw}
    with pytest.raises(ValueError, match=match):
        rho_schedule(**args)


# -- 5. invariant_basis ---------------------------------------------------------------------------

def check_basis(basis, d, r, depth):
    assert isinstance(basis, InvariantBasis)
    assert basis.depth == depth and basis.width == 2 * r and basis.rank == r
    for l in range(depth):
        for q in (basis.U[l], basis.V[l]):
            assert q.shape == (d, 2 * r)
            np.testing.assert_allclose(q.T @ q, np.eye(2 * r), atol=1e-13)
        if l + 1 < depth:
            np.testing.assert_array_equal(basis.U[l], basis.V[l + 1])    # V_{l+1} = U_l


@pytest.mark.parametrize("depth, eps, seed", [(2, 0.5, 0), (3, 0.5, 1), (3, 1.0, 2), (4, 0.3, 3)])
def test_invariant_basis_closed_form(depth, eps, seed):
    d, r = 20, 3
    phi = unit_target(d, r, seed)
    prob = dl.Factorization(phi, reduction="sum")
    net = dl.DeepLinearNetwork(depth, d, init_scale=eps, seed=seed)
    basis = invariant_basis(net, prob)
    check_basis(basis, d, r, depth)
    assert basis.method == "closed_form" and basis.init_scale == pytest.approx(eps, rel=1e-14)

    # independent: C, R from NumPy's SVD of Φ, O = O_L ⋯ O_1 from the initial weights
    u, s, vt = np.linalg.svd(phi)
    C, Rr = u[:, :r], vt[:r].T
    O = [w / eps for w in net.initial_weights()]
    prod = np.eye(d)
    for o in O:
        prod = o @ prod
    V1 = basis.V[0]
    assert outside(V1, Rr) <= 1e-13                 # span(R) ⊂ span(V_{1,1})
    assert outside(V1, prod.T @ C) <= 1e-13         # span(Oᵀ C) ⊂ span(V_{1,1})
    # exactly that sum (dimension 2r for a generic init)
    span = np.linalg.svd(np.hstack([Rr, prod.T @ C]), compute_uv=False)
    assert span[-1] > 1e-3
    # U_{l,1} = O_l ⋯ O_1 V_{1,1}; U_{L,1} ⊇ col(Φ)
    cur = V1
    for l, o in enumerate(O):
        cur = o @ cur
        np.testing.assert_allclose(basis.U[l], cur, atol=1e-13)
    assert outside(basis.U[-1], C) <= 1e-13
    # Φ = U_{L,1} Φ̃ V_{1,1}ᵀ: the target lives in the block
    phi_t = basis.U[-1].T @ phi @ V1
    np.testing.assert_allclose(basis.U[-1] @ phi_t @ V1.T, phi, atol=1e-13)

    # the gradient method (MATH.md §4) spans the same space, up to its κ² error growth
    grad = invariant_basis(net, prob, method="gradient")
    check_basis(grad, d, r, depth)
    kappa = eps ** depth / s[r - 1]
    for l in range(depth):
        for a, b in ((basis.V[l], grad.V[l]), (basis.U[l], grad.U[l])):
            assert np_principal_angles(a, b).max() <= 1e-12 * max(1.0, kappa ** 2)

    # the same from a network that has been trained meanwhile (basis from the initial weights)
    dl.train(net, prob, dl.GD(lr=0.1), 20, progress=False)
    again = invariant_basis(net, prob)
    for l in range(depth):
        np.testing.assert_array_equal(again.V[l], basis.V[l])


def test_invariant_basis_weight_decay_scale():
    """MATH.md §4: with the "mean" reduction and weight decay the gradient basis needs G without
    the λW_1 term; with it, κ would include λε^{2−L}/c.  The basis never sees λ: it matches the
    closed form whatever the optimizer."""
    d, r = 20, 2
    prob = dl.Factorization(unit_target(d, r, 5), reduction="mean")
    net = dl.DeepLinearNetwork(3, d, init_scale=0.5, seed=5)
    a, b = invariant_basis(net, prob), invariant_basis(net, prob, method="gradient")
    assert max(np_principal_angles(x, y).max() for x, y in zip(a.V, b.V)) <= 1e-11


def test_invariant_basis_padding():
    """When span(R) + span(Oᵀ C) has fewer than 2r dimensions the basis is padded: a symmetric
    PSD Φ and W_l(0) = ε I give R = C = Oᵀ C (r dimensions)."""
    d, r, eps = 10, 2, 0.5
    rng = np.random.default_rng(6)
    a = np.linalg.qr(rng.standard_normal((d, r)))[0]
    phi = a @ np.diag([1.0, 0.5]) @ a.T
    net = dl.DeepLinearNetwork.from_weights([eps * np.eye(d)] * 3)
    basis = invariant_basis(net, dl.Factorization(phi, "sum"))
    check_basis(basis, d, r, 3)
    assert outside(basis.V[0], a) <= 1e-13
    # GD from there keeps the form
    net2 = dl.DeepLinearNetwork.from_weights([eps * np.eye(d)] * 3)
    dl.train(net2, dl.Factorization(phi, "sum"), dl.GD(lr=0.2), 200, progress=False)
    assert structure_residual(net2, basis)["residual"].max() <= 1e-12


def test_invariant_basis_completion_gradient():
    d, r = 16, 2
    rng = np.random.default_rng(7)
    phi = unit_target(d, r, 7)
    prob = dl.Completion(phi, rng.random((d, d)) < 0.5, reduction="sum")
    net = dl.DeepLinearNetwork(3, d, init_scale=0.5, seed=7)
    basis = invariant_basis(net, prob, method="gradient", rank=r)
    check_basis(basis, d, r, 3)
    # V_{1,1} = orth[top-r right singular vectors of G and of Gᵀ W_1(0)], G without weight decay
    w0 = net.initial_weights()
    e2e = w0[2] @ w0[1] @ w0[0]
    G = (w0[1].T @ w0[2].T) @ ((e2e - phi) * prob.mask)
    v1 = np.linalg.svd(G)[2][:r].T
    v2 = np.linalg.svd(G.T @ w0[0])[2][:r].T
    assert outside(basis.V[0], v1) <= 1e-12 and outside(basis.V[0], v2) <= 1e-12
    # U_{L,1} = W_{L:1}(0) V_{1,1} / ε^L
    np.testing.assert_allclose(basis.U[-1], e2e @ basis.V[0] / 0.5 ** 3, atol=1e-13)


def test_invariant_basis_gaussian_init():
    """Gaussian init: no closed form; the gradient basis is orthonormalized (same span as
    W_{l:1}(0) V_{1,1})."""
    d, r = 16, 2
    prob = dl.Factorization(unit_target(d, r, 8), reduction="sum")
    net = dl.DeepLinearNetwork(3, d, init="gaussian", init_scale=0.5, seed=8)
    with pytest.raises(ValueError, match="orthogonal"):
        invariant_basis(net, prob)
    basis = invariant_basis(net, prob, method="gradient")
    check_basis(basis, d, r, 3)
    w0 = net.initial_weights()
    cur = basis.V[0]
    for l, w in enumerate(w0):
        cur = w @ cur
        assert outside(basis.U[l], cur) <= 1e-12


def test_invariant_basis_validation():
    d = 12
    fac = dl.Factorization(unit_target(d, 2, 0), reduction="sum")
    comp = dl.Completion(fac.target, np.ones((d, d)), reduction="sum")
    net = dl.DeepLinearNetwork(3, d, init_scale=0.5, seed=0)
    with pytest.raises(ValueError, match="method"):
        invariant_basis(net, fac, method="svd")
    with pytest.raises(ValueError, match="closed_form"):
        invariant_basis(net, comp)
    with pytest.raises(ValueError, match="rank"):
        invariant_basis(net, comp, method="gradient")
    with pytest.raises(ValueError, match="2r"):
        invariant_basis(net, fac, rank=7)
    with pytest.raises(TypeError, match="problem"):
        invariant_basis(net, dl.Regression(np.eye(d), np.eye(d)))
    with pytest.raises(TypeError, match="net"):
        invariant_basis(net.weights, fac)
    with pytest.raises(ValueError, match="square"):
        invariant_basis(dl.DeepLinearNetwork(2, dims=[d, 8, d], seed=0), fac)
    with pytest.raises(ValueError, match="shape"):
        invariant_basis(dl.DeepLinearNetwork(3, 10, seed=0), fac)
    basis = invariant_basis(net, fac)
    with pytest.raises(TypeError, match="basis"):
        structure_residual(net, basis.U)
    with pytest.raises(ValueError, match="basis"):
        structure_residual(dl.DeepLinearNetwork(2, d, seed=0), basis)
    assert invariant_basis(net, fac, rank=2).rank == 2
    assert invariant_basis(net, fac).rank == 2        # numerical rank of the target
