"""Compressed matrix completion on sparse observations (MATH.md §4): gradients against finite
differences, training against a dense NumPy implementation written here, sparse and dense
input, the discrepant learning rate against the wide network, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl


def make_problem(d_out=30, d_in=25, rank=2, observed=0.4, seed=0, reduction="mean"):
    rng = np.random.default_rng(seed)
    target = rng.standard_normal((d_out, rank)) @ rng.standard_normal((rank, d_in)) / np.sqrt(rank)
    mask = rng.random((d_out, d_in)) < observed
    return target, mask, dl.Completion(target, mask, reduction=reduction)


def sparse_of(target, mask, reduction="mean", shuffle_seed=None):
    r, c = np.nonzero(mask)
    tr, tc = np.nonzero(~mask)
    if shuffle_seed is not None:  # any order is accepted
        p = np.random.default_rng(shuffle_seed).permutation(len(r))
        r, c = r[p], c[p]
    return dl.Completion.from_entries(r, c, target[r, c], target.shape, reduction=reduction,
                                      test=(tr, tc, target[tr, tc]))


# -- a dense NumPy oracle ---------------------------------------------------------------------

def numpy_loss(U, ws, V, target, mask, c, lam=0.0):
    a = np.eye(U.shape[1])
    for w in ws:
        a = w @ a
    r = mask * (U @ a @ V.T - target)
    train = 0.5 * c * np.sum(r * r) + 0.5 * lam * (np.sum(U * U) + np.sum(V * V) + sum(np.sum(w * w) for w in ws))
    e = (1 - mask) * (U @ a @ V.T - target)
    return train, 0.5 * c * np.sum(e * e)


def numpy_grads(U, ws, V, target, mask, c, lam=0.0):
    L = len(ws)
    prefix = [np.eye(U.shape[1])]
    for w in ws:
        prefix.append(w @ prefix[-1])
    a = prefix[-1]
    S = c * mask * (U @ a @ V.T - target)
    gU = S @ V @ a.T + lam * U
    gV = S.T @ U @ a + lam * V
    M = U.T @ S @ V
    gws = [None] * L
    suffix = np.eye(U.shape[1])  # W_{L:l+1}
    for l in range(L - 1, -1, -1):
        gws[l] = suffix.T @ M @ prefix[l].T + lam * ws[l]
        suffix = suffix @ ws[l]
    return gU, gws, gV


def numpy_train(U, ws, V, target, mask, c, lr, alpha, steps, momentum=0.0, lam=0.0):
    U, V, ws = U.copy(), V.copy(), [w.copy() for w in ws]
    params = [V] + ws + [U]
    scales = [alpha] + [1.0] * len(ws) + [alpha]
    traces = [np.zeros_like(p) for p in params]
    losses = []
    for t in range(steps + 1):
        losses.append(numpy_loss(params[-1], params[1:-1], params[0], target, mask, c, lam))
        if t == steps:
            break
        gU, gws, gV = numpy_grads(params[-1], params[1:-1], params[0], target, mask, c, lam)
        grads = [gV] + gws + [gU]
        for i, g in enumerate(grads):
            if momentum:
                traces[i] = momentum * traces[i] + g
                g = traces[i]
            params[i] = params[i] - (lr * scales[i]) * g
    return np.array(losses), params


# -- gradients ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_gradients_match_finite_differences(lam):
    target, mask, prob = make_problem(9, 7, rank=1, observed=0.5, reduction="sum")
    model = dl.CompressedCompletion(prob, rank=1, depth=3, init="spectral", init_scale=0.5)
    rng = np.random.default_rng(3)
    start = [rng.standard_normal(w.shape) * 0.7 for w in model.weights]  # V, W1..W3, U

    def set_all(ws):
        for i, w in enumerate(ws):
            model._factors.set(i, np.ascontiguousarray(w))

    def loss(ws):
        set_all(ws)
        return dl.train(model, prob, dl.GD(lr=1.0, weight_decay=lam), 0, progress=False).train_loss[0]

    # the core's gradient: one GD step with lr = 1 and alpha = 1 moves every factor by -grad
    model.outer_lr_scale = 1.0
    set_all(start)
    dl.train(model, prob, dl.GD(lr=1.0, weight_decay=lam), 1, progress=False)
    core = [w0 - w1 for w0, w1 in zip(start, model.weights)]
    h = 1e-6
    for i, w0 in enumerate(start):
        fd = np.zeros_like(w0)
        for idx in np.ndindex(*w0.shape):
            plus = [w.copy() for w in start]
            minus = [w.copy() for w in start]
            plus[i][idx] += h
            minus[i][idx] -= h
            fd[idx] = (loss(plus) - loss(minus)) / (2 * h)
        np.testing.assert_allclose(core[i], fd, rtol=1e-6, atol=1e-7 * np.max(np.abs(fd)))
    # and the dense formula of MATH.md §4
    gU, gws, gV = numpy_grads(start[-1], start[1:-1], start[0], target, mask.astype(float), 1.0, lam)
    for got, want in zip(core, [gV] + gws + [gU]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.max(np.abs(want)))


# -- training against the dense oracle ---------------------------------------------------------

@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("alpha", [0.0, 0.01, 1.0])
def test_training_matches_dense_numpy(reduction, momentum, alpha):
    target, mask, prob = make_problem(reduction=reduction)
    c = prob.c
    lr = (0.004 if momentum == 0 else 0.0005) / c
    model = dl.CompressedCompletion(prob, rank=2, depth=3, init_scale=0.05, outer_lr_scale=alpha, seed=1)
    V0, *mid, U0 = model.weights
    steps = 250
    res = dl.train(model, prob, dl.GD(lr=lr, momentum=momentum), steps, progress=False)
    assert res.status == "max_steps"
    want, params = numpy_train(U0, mid, V0, target, mask.astype(float), c, lr, alpha, steps, momentum)
    np.testing.assert_allclose(res.train_loss, want[:, 0], rtol=1e-10)
    np.testing.assert_allclose(res.test_loss, want[:, 1], rtol=1e-10)
    # the run did something: the loss moved, and U, V moved iff alpha > 0
    assert res.train_loss[-1] < 0.9 * res.train_loss[0]
    U, ws, V = model.factors()
    assert np.array_equal(U, U0) == (alpha == 0.0)
    np.testing.assert_allclose(U, params[-1], rtol=1e-8, atol=1e-10)
    # the relative test RMSE, from its definition
    a = np.linalg.multi_dot(ws[::-1])
    err = (U @ a @ V.T - target)[~mask]
    np.testing.assert_allclose(res.test_rmse[-1], np.linalg.norm(err) / np.linalg.norm(target[~mask]), rtol=1e-9)


def test_weight_decay_and_adam_match_dense_numpy():
    target, mask, prob = make_problem(reduction="sum")
    model = dl.CompressedCompletion(prob, rank=2, depth=2, init_scale=0.05, outer_lr_scale=0.1, seed=2)
    V0, *mid, U0 = model.weights
    lam = 0.01
    res = dl.train(model, prob, dl.GD(lr=0.003, weight_decay=lam), 200, progress=False)
    want, _ = numpy_train(U0, mid, V0, target, mask.astype(float), 1.0, 0.003, 0.1, 200, lam=lam)
    np.testing.assert_allclose(res.train_loss, want[:, 0], rtol=1e-10)
    # Adam: the step scale multiplies the update, not the gradient (alpha = 0.1 of an Adam step)
    model2 = dl.CompressedCompletion(prob, rank=2, depth=2, init_scale=0.05, outer_lr_scale=0.1, seed=2)
    dl.train(model2, prob, dl.Adam(lr=1e-3), 1, progress=False)
    U1 = model2.factors()[0]
    # Adam's first step is lr g / (|g| + eps), times alpha for U
    gU = numpy_grads(U0, mid, V0, target, mask.astype(float), 1.0)[0]
    np.testing.assert_allclose(U0 - U1, 0.1 * 1e-3 * gU / (np.abs(gU) + 1e-8), rtol=1e-9, atol=1e-18)


def test_sparse_and_dense_input_identical_runs():
    target, mask, dense = make_problem()
    sparse = sparse_of(target, mask, shuffle_seed=5)
    runs = []
    for prob in (dense, sparse):
        model = dl.CompressedCompletion(prob, rank=2, depth=3, seed=4)
        res = dl.train(model, prob, dl.GD(lr=3.0, momentum=0.5), 150, progress=False)
        runs.append((res, model.weights))
    (r1, w1), (r2, w2) = runs
    assert np.array_equal(r1.train_loss, r2.train_loss)
    assert np.array_equal(r1.test_loss, r2.test_loss)
    assert np.array_equal(r1.test_rmse, r2.test_rmse)
    for a, b in zip(w1, w2):
        assert np.array_equal(a, b)


def test_wide_init_is_the_gradient_basis():
    target, mask, prob = make_problem(20, 20, rank=2)
    model = dl.CompressedCompletion(prob, rank=2, depth=3, init="wide", init_scale=1e-2, seed=7)
    U, ws, V = model.factors()
    net = dl.DeepLinearNetwork(3, 20, init="orthogonal", init_scale=1e-2, seed=7)
    basis = dl.invariant_basis(net, prob, method="gradient", rank=2)
    np.testing.assert_allclose(U, basis.U[-1], atol=1e-12)
    np.testing.assert_allclose(V, basis.V[0], atol=1e-12)
    for w in ws:
        np.testing.assert_array_equal(w, 1e-2 * np.eye(4))
    # the sparse problem gives the same basis
    model2 = dl.CompressedCompletion(sparse_of(target, mask), rank=2, depth=3, init="wide", init_scale=1e-2, seed=7)
    np.testing.assert_allclose(model2.factors()[0], U, atol=1e-12)


def test_spectral_init_recovers_subspaces_without_dense_matrices():
    rng = np.random.default_rng(0)
    d, r = 300, 3
    A, B = np.linalg.qr(rng.standard_normal((d, r)))[0], np.linalg.qr(rng.standard_normal((d, r)))[0]
    target = (A * [60.0, 45.0, 30.0]) @ B.T
    mask = rng.random((d, d)) < 0.3
    rows, cols = np.nonzero(mask)
    prob = dl.Completion.from_entries(rows, cols, target[rows, cols], (d, d))
    # the default (3 subspace iterations): the target's subspaces up to the sampling noise
    U3, _, V3 = dl.CompressedCompletion(prob, rank=r, depth=2, init_scale=1e-3).factors()
    for basis, true in ((U3[:, :r], A), (V3[:, :r], B)):
        assert np.linalg.svd(true.T @ basis, compute_uv=False).min() > 0.9
    # more iterations: converged to Y's subspaces
    model = dl.CompressedCompletion(prob, rank=r, depth=2, init_scale=1e-3, power_steps=8)
    U, ws, V = model.factors()
    np.testing.assert_allclose(U.T @ U, np.eye(2 * r), atol=1e-12)
    np.testing.assert_allclose(V.T @ V, np.eye(2 * r), atol=1e-12)
    # the top-r part: the top singular subspaces of Y = P_Ω(Φ)/p (a dense SVD here), which
    # approximate the target's (sampling noise)
    Y = np.where(mask, target, 0.0) / prob.observed_fraction
    P, sv, Qt = np.linalg.svd(Y)
    for basis, dense, true in ((U[:, :r], P[:, :r], A), (V[:, :r], Qt[:r].T, B)):
        assert np.linalg.svd(dense.T @ basis, compute_uv=False).min() > 1 - 1e-6
        assert np.linalg.svd(true.T @ basis, compute_uv=False).min() > 0.9
    # balanced middle factors: diag(sigma^(1/L), eps)
    np.testing.assert_array_equal(ws[0], ws[1])
    np.testing.assert_allclose(np.diag(ws[0])[r:], 1e-3)
    np.testing.assert_allclose(np.diag(ws[0])[:r] ** 2, sv[:r], rtol=1e-8)
    # predictions
    got = model.predict(rows[:50], cols[:50])
    B_, V_ = model.end_to_end_factors()
    np.testing.assert_allclose(got, np.sum(B_[rows[:50]] * V_[cols[:50]], axis=1), rtol=1e-13)


def test_outer_factors_matter_against_the_wide_network():
    """d = 100, 30% observed: alpha = 0.01 reaches the wide network's test error (within 10%),
    frozen U, V (alpha = 0) do not (MATH.md §4)."""
    rng = np.random.default_rng(1)
    d, r = 100, 3
    target = rng.standard_normal((d, r)) @ rng.standard_normal((r, d)) / np.sqrt(r * d) * 3
    mask = rng.random((d, d)) < 0.3
    prob = dl.Completion(target, mask)
    # η = 300: below the stability limit η c p L σ₁^{4/3} < 2 of the balanced solution (σ₁ ≈ 20)
    eps, lr, steps = 0.1, 300.0, 1500
    threads = dl.get_num_threads()
    dl.set_num_threads(1)  # d = 100: threaded BLAS only adds contention
    try:
        net = dl.DeepLinearNetwork(3, d, init="orthogonal", init_scale=eps, seed=0)
        wide = dl.train(net, prob, dl.GD(lr=lr), steps, record_every=100, progress=False)
        errs = {}
        for alpha in (0.01, 0.0):
            model = dl.CompressedCompletion(prob, rank=r, depth=3, init="wide", init_scale=eps, outer_lr_scale=alpha)
            res = dl.train(model, prob, dl.GD(lr=lr), steps, record_every=100, progress=False)
            errs[alpha] = res.test_rmse[-1]
    finally:
        dl.set_num_threads(threads)
    assert wide.test_rmse[-1] < 1e-2  # the wide network completes the matrix
    assert errs[0.01] <= 1.1 * wide.test_rmse[-1]
    assert errs[0.0] > 1.1 * wide.test_rmse[-1]


# -- train() keywords ---------------------------------------------------------------------------

def test_checkpoint_resume_is_bit_identical(tmp_path):
    target, mask, prob = make_problem()
    opt = dl.GD(lr=2.0, momentum=0.9)
    ref_model = dl.CompressedCompletion(prob, rank=2, depth=3)
    ref = dl.train(ref_model, prob, opt, 120, progress=False)
    path = tmp_path / "ck.npz"
    model = dl.CompressedCompletion(prob, rank=2, depth=3)
    part = dl.train(model, prob, opt, 70, checkpoint=path, checkpoint_every=35, progress=False)
    assert part.n_steps == 70
    fresh = dl.CompressedCompletion(prob, rank=2, depth=3)
    res = dl.train(fresh, prob, opt, 120, checkpoint=path, checkpoint_every=35, progress=False)
    assert np.array_equal(res.train_loss, ref.train_loss)
    for a, b in zip(fresh.weights, ref_model.weights):
        assert np.array_equal(a, b)
    other = dl.CompressedCompletion(prob, rank=2, depth=2)
    with pytest.raises(ValueError, match="another run"):
        dl.train(other, prob, opt, 120, checkpoint=path, progress=False)


def test_callback_tol_record_every_and_divergence():
    target, mask, prob = make_problem()
    seen = []
    model = dl.CompressedCompletion(prob, rank=2, depth=3)
    res = dl.train(model, prob, dl.GD(lr=3.0), 100, record_every=7, callback=lambda s, m: seen.append(s),
                   callback_every=25, progress=False)
    assert seen == [0, 25, 50, 75, 100]
    assert list(res.steps) == list(range(0, 100, 7)) + [100]
    tol = res.train_loss[50 // 7] * 1.0001
    res2 = dl.train(dl.CompressedCompletion(prob, rank=2, depth=3), prob, dl.GD(lr=3.0), 100, tol=tol, progress=False)
    assert res2.status == "converged" and res2.train_loss[-1] <= tol
    with pytest.warns(dl.DivergenceWarning):
        bad = dl.train(dl.CompressedCompletion(prob, rank=2, depth=3), prob, dl.GD(lr=1e6), 50, progress=False)
    assert bad.status == "diverged"
    with pytest.raises(dl.DivergenceError):
        dl.train(dl.CompressedCompletion(prob, rank=2, depth=3), prob, dl.GD(lr=1e6), 50, progress=False,
                 on_divergence="raise")


@pytest.mark.parametrize("track", ["full", "incremental", lambda: dl.Tracking("full", every=5)])
def test_train_refuses_tracking(track):
    _, _, prob = make_problem()
    track = track() if callable(track) else track
    with pytest.raises(ValueError, match="track"):
        dl.train(dl.CompressedCompletion(prob, rank=2, depth=2), prob, dl.GD(lr=1.0), 5, progress=False,
                 track=track)


def test_wide_network_reports_test_rmse_and_refuses_sparse_problems():
    target, mask, prob = make_problem(20, 20)
    net = dl.DeepLinearNetwork(2, 20, init_scale=0.3)
    res = dl.train(net, prob, dl.GD(lr=100.0), 20, progress=False)
    err = (net.end_to_end() - target)[~mask]
    np.testing.assert_allclose(res.test_rmse[-1], np.linalg.norm(err) / np.linalg.norm(target[~mask]), rtol=1e-9)
    with pytest.raises(ValueError, match="from_entries"):
        dl.train(net, sparse_of(target, mask), dl.GD(lr=1.0), 2, progress=False)


# -- bad input ----------------------------------------------------------------------------------

def test_from_entries_refuses_bad_entries():
    rows, cols, vals = np.array([0, 1, 2]), np.array([1, 0, 2]), np.array([1.0, 2.0, 3.0])
    F = dl.Completion.from_entries
    with pytest.raises(ValueError, match="duplicate entry \\(1, 0\\)"):
        F([0, 1, 1], [1, 0, 0], [1.0, 2.0, 3.0], (3, 3))
    with pytest.raises(ValueError, match="rows: index 3 out of range"):
        F([0, 3], [0, 0], [1.0, 2.0], (3, 3))
    with pytest.raises(ValueError, match="cols: index -1 out of range"):
        F([0, 1], [0, -1], [1.0, 2.0], (3, 3))
    with pytest.raises(ValueError, match="values: contains NaN"):
        F(rows, cols, [1.0, np.nan, 3.0], (3, 3))
    with pytest.raises(ValueError, match="same length"):
        F(rows, cols, vals[:2], (3, 3))
    with pytest.raises(TypeError, match="rows: must hold integers"):
        F(rows.astype(float), cols, vals, (3, 3))
    with pytest.raises(ValueError, match="shape"):
        F(rows, cols, vals, (3,))
    with pytest.raises(ValueError, match="test: entry \\(2, 2\\) is also observed"):
        F(rows, cols, vals, (3, 3), test=([0, 2], [0, 2], [1.0, 1.0]))
    with pytest.raises(ValueError, match="test values: contains NaN"):
        F(rows, cols, vals, (3, 3), test=([0], [0], [np.inf]))
    with pytest.raises(ValueError, match="test rows: index 5"):
        F(rows, cols, vals, (3, 3), test=([5], [0], [1.0]))
    with pytest.raises(ValueError, match="test: must be a tuple"):
        F(rows, cols, vals, (3, 3), test=([0], [0]))
    with pytest.raises(ValueError, match="reduction"):
        F(rows, cols, vals, (3, 3), reduction="max")
    # the caller's arrays are neither modified nor frozen
    v = np.array([1.0, 2.0, 3.0])
    F(np.array([0, 1, 2]), np.array([0, 1, 2]), v, (3, 3))
    v[0] = 5.0


def test_compressed_completion_refuses_bad_arguments():
    _, _, prob = make_problem(10, 8)
    with pytest.raises(TypeError, match="problem"):
        dl.CompressedCompletion(dl.problems.factorization(8, 2), rank=2, depth=2)
    with pytest.raises(ValueError, match="rank: 2r = 10"):
        dl.CompressedCompletion(prob, rank=5, depth=2)
    with pytest.raises(ValueError, match="init"):
        dl.CompressedCompletion(prob, rank=2, depth=2, init="gaussian")
    with pytest.raises(ValueError, match="outer_lr_scale"):
        dl.CompressedCompletion(prob, rank=2, depth=2, outer_lr_scale=-1.0)
    with pytest.raises(ValueError, match="init_scale"):
        dl.CompressedCompletion(prob, rank=2, depth=2, init_scale=0.0)
    with pytest.raises(ValueError, match="init: 'wide' needs a square"):
        dl.CompressedCompletion(prob, rank=2, depth=2, init="wide")
    with pytest.raises(ValueError, match="power_steps"):
        dl.CompressedCompletion(prob, rank=2, depth=2, power_steps=-1)
    with pytest.raises(TypeError, match="power_steps"):
        dl.CompressedCompletion(prob, rank=2, depth=2, power_steps=2.5)
    _, _, square = make_problem(10, 10)
    with pytest.raises(ValueError, match="power_steps: applies to init='spectral' only"):
        dl.CompressedCompletion(square, rank=2, depth=2, init="wide", power_steps=5)
    model = dl.CompressedCompletion(prob, rank=2, depth=2)
    _, _, other = make_problem(9, 8)
    with pytest.raises(ValueError, match="problem: shape"):
        dl.train(model, other, dl.GD(lr=1.0), 1, progress=False)
    with pytest.raises(ValueError, match="rows: indices"):
        model.predict([10], [0])
    with pytest.raises(ValueError, match="cols: has 2"):
        model.predict([1], [0, 1])


# -- the column-blocked pass, the step rule, the one-train-at-a-time guard (issue 12) -----------

@pytest.mark.parametrize("column_block", [1, 4, 7])
def test_column_blocked_pass_matches_dense_numpy(column_block):
    """The pass over the entries one column block at a time (the layout of large d) gives the
    dense NumPy run, with threads (rows split) and several blocks per row."""
    from deeplinear import _core

    target, mask, prob = make_problem(d_out=40, d_in=29, observed=0.5, seed=3)
    model = dl.CompressedCompletion(prob, rank=2, depth=2, init_scale=0.05, outer_lr_scale=0.5, seed=1)
    V0, *mid, U0 = model.weights
    obs, test = prob._entries()
    lr, steps = 0.002 / prob.c, 60
    tr = _core.CompletionTrainer64(model._factors, obs.core, test.core, 40, 29, dl.GD(lr=lr, momentum=0.5)._config(),
                                   prob.c, 0.5, 1, -1.0, steps, 2, column_block)
    assert tr.column_block == column_block
    tr.run(steps)
    tr.finish()
    want, params = numpy_train(U0, mid, V0, target, mask.astype(float), prob.c, lr, 0.5, steps, 0.5)
    h = tr.history()
    np.testing.assert_allclose(h["train_loss"], want[:, 0], rtol=1e-11)
    np.testing.assert_allclose(h["test_loss"], want[:, 1], rtol=1e-11)
    assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    for got, ref in zip(model.weights, params):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_sparse_product_threads_and_blocks_match_numpy():
    from deeplinear import _core

    rng = np.random.default_rng(0)
    d_out, d_in = 300, 70000  # many column blocks at n = 15 columns of x
    rows = rng.integers(0, d_out, 40000)
    cols = rng.integers(0, d_in, 40000)
    keys = np.unique(rows * d_in + cols)
    r, c = np.divmod(keys, d_in)
    vals = rng.standard_normal(len(r))
    prob = dl.Completion.from_entries(r, c, vals, (d_out, d_in))
    obs = prob._entries()[0]
    x = rng.standard_normal((d_in, 15))
    xt = rng.standard_normal((d_out, 15))
    for threads in (1, 2):
        y = _core.sparse_product64(obs.core, d_out, d_in, x, False, threads)
        want = np.zeros((d_out, 15))
        np.add.at(want, r, vals[:, None] * x[c])
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
        yt = _core.sparse_product64(obs.core, d_out, d_in, xt, True, threads)
        want_t = np.zeros((d_in, 15))
        np.add.at(want_t, c, vals[:, None] * xt[r])
        np.testing.assert_allclose(yt, want_t, rtol=1e-12, atol=1e-12)


def test_stable_lr_is_the_curvature_rule_and_trains():
    target, mask, prob = make_problem(d_out=60, d_in=50, rank=2, observed=0.5, seed=2)
    model = dl.CompressedCompletion(prob, rank=2, depth=3, outer_lr_scale=0.1, seed=0)
    U, ws, V = model.factors()
    # the rule from its definition (MATH.md §4's scaling), with NumPy's spectral norms
    n2 = lambda m: np.linalg.svd(m, compute_uv=False)[0] ** 2  # noqa: E731
    a = ws[2] @ ws[1] @ ws[0]
    mid = n2(U) * n2(V) * (n2(ws[2] @ ws[1]) + n2(ws[2]) * n2(ws[0]) + n2(ws[1] @ ws[0]))
    lam = prob.c * mask.mean() * (mid + 0.1 * (n2(a) * n2(V) + n2(U @ a)))
    # plus the residual's curvature: c ‖P_Ω(Ŵ − Φ)‖_F times the largest block-row sum of the
    # products of the other factors' norms (sqrt(α) for U and V)
    rn = np.linalg.norm(mask * (U @ a @ V.T - target))
    norms = [np.sqrt(n2(U))] + [np.sqrt(n2(w)) for w in ws[::-1]] + [np.sqrt(n2(V))]
    step = [np.sqrt(0.1), 1.0, 1.0, 1.0, np.sqrt(0.1)]
    rowsum = max(sum(step[i] * step[j] * np.prod([norms[m] for m in range(5) if m not in (i, j)])
                     for j in range(5) if j != i) for i in range(5))
    lam += prob.c * rn * rowsum
    np.testing.assert_allclose(model.stable_lr(prob, momentum=0.9), 1.9 / (4 * lam), rtol=1e-12)
    np.testing.assert_allclose(model.stable_lr(prob), 1.0 / (4 * lam), rtol=1e-12)
    res = dl.train(model, prob, dl.GD(lr=model.stable_lr(prob, 0.9), momentum=0.9), 300, progress=False)
    assert res.status == "max_steps" and res.test_rmse[-1] < 1e-6
    with pytest.raises(ValueError, match="^momentum"):
        model.stable_lr(prob, momentum=1.0)
    with pytest.raises(ValueError, match="^problem"):
        model.stable_lr(make_problem(d_out=30, d_in=25)[2])


def test_one_train_at_a_time():
    """As for networks (issue 15): a second train of the same model from its own callback is
    refused, the model is left consistent, and a copy trains independently."""
    target, mask, prob = make_problem()
    model = dl.CompressedCompletion(prob, rank=2, depth=2, seed=0)
    errors = []

    def cb(step, m):
        if step == 5:
            try:
                dl.train(m, prob, dl.GD(lr=1.0), 3, progress=False)
            except ValueError as e:
                errors.append(str(e))

    twin = model.copy()
    res = dl.train(model, prob, dl.GD(lr=1.0), 10, callback=cb, callback_every=5, progress=False)
    assert len(errors) == 1 and errors[0].startswith("net: is being trained")
    assert model.steps_trained == 10
    ref = dl.train(twin, prob, dl.GD(lr=1.0), 10, progress=False)  # the copy: the same run, untouched
    np.testing.assert_array_equal(res.train_loss, ref.train_loss)
    dl.train(model, prob, dl.GD(lr=1.0), 2, progress=False)  # free again after the run
