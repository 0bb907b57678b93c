"""ReLU networks and classification (MATH.md §5) against a NumPy implementation written here:
forward pass, loss, gradients (also against finite differences), training with GD, momentum and
Adam, features, accuracy; the refusals of what needs a linear network."""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl
import oracle


# -- a direct NumPy ReLU network (the oracle) ------------------------------------------------------

def np_forward(weights, X, relu):
    """[H_0 = X, H_1, …, H_{L−1}] and the output W_L H_{L−1}."""
    hs = [X]
    for w in weights[:-1]:
        z = w @ hs[-1]
        hs.append(np.maximum(z, 0.0) if relu else z)
    return hs, weights[-1] @ hs[-1]


def np_loss(weights, X, Y, c, relu, wd=0.0):
    _, out = np_forward(weights, X, relu)
    return 0.5 * c * np.sum((out - Y) ** 2) + 0.5 * wd * sum(np.sum(w * w) for w in weights)


def np_grads(weights, X, Y, c, relu, wd=0.0):
    """Backpropagation written out: δ_L = c (out − Y), δ_{l−1} = (W_lᵀ δ_l) ⊙ 1[Z_{l−1} > 0]."""
    hs, out = np_forward(weights, X, relu)
    L = len(weights)
    grads = [None] * L
    delta = c * (out - Y)
    for l in range(L - 1, -1, -1):
        grads[l] = delta @ hs[l].T + wd * weights[l]
        if l > 0:
            delta = weights[l].T @ delta
            if relu:
                delta = delta * (hs[l] > 0)
    return grads


def np_train(weights, X, Y, c, relu, opt, steps):
    s = oracle.OptSettings.from_dl(opt)
    ws = [np.array(w, dtype=np.float64) for w in weights]
    o = oracle.Optimizer(s, [w.shape for w in ws])
    losses = [np_loss(ws, X, Y, c, relu, s.weight_decay)]
    for _ in range(steps):
        ws = o.step(ws, np_grads(ws, X, Y, c, relu, s.weight_decay))
        losses.append(np_loss(ws, X, Y, c, relu, s.weight_decay))
    return np.array(losses), ws


def small_classification(seed=0, d=6, n=24, K=3, reduction="mean"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d, n)) / np.sqrt(d)
    labels = np.arange(n) % K * 7 - 3          # arbitrary integer labels: -3, 4, 11
    return dl.Classification(X, labels, reduction=reduction)


# -- forward, loss, gradients ----------------------------------------------------------------------

@pytest.mark.parametrize("relu", [False, True])
def test_features_and_forward_match_numpy(relu):
    prob = small_classification()
    net = dl.DeepLinearNetwork(4, dims=[6, 8, 7, 5, 3], init="gaussian", init_scale=1.5, seed=3,
                               activation="relu" if relu else None)
    hs, out = np_forward(net.weights, prob.X, relu)
    feats = net.features(prob.X)
    assert len(feats) == net.depth
    for a, b in zip(feats, hs):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(net.forward(prob.X), out, rtol=1e-13, atol=1e-14)
    if relu:
        assert all((h >= 0).all() for h in feats[1:]) and (out < 0).any()  # never on the output


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_relu_gradients_match_backprop_and_finite_differences(reduction, wd):
    prob = small_classification(reduction=reduction)
    net = dl.DeepLinearNetwork(3, dims=[6, 9, 8, 3], init="gaussian", init_scale=2.0, seed=1, activation="relu")
    ws = net.weights
    loss, _, grads = dl.loss_and_gradients(net, prob, weight_decay=wd)
    assert np.isclose(loss, np_loss(ws, prob.X, prob.Y, prob.c, True, wd), rtol=1e-13)
    for g, gn in zip(grads, np_grads(ws, prob.X, prob.Y, prob.c, True, wd)):
        np.testing.assert_allclose(g, gn, rtol=1e-12, atol=1e-15)
    # central differences, away from kinks: no pre-activation within 1e-4 of zero
    h = 1e-6
    _, zs = np_forward(ws[:-1], prob.X, True)
    for l in range(len(ws)):
        fd = np.zeros_like(ws[l])
        for idx in np.ndindex(*ws[l].shape):
            wp = [w.copy() for w in ws]
            wm = [w.copy() for w in ws]
            wp[l][idx] += h
            wm[l][idx] -= h
            fd[idx] = (np_loss(wp, prob.X, prob.Y, prob.c, True, wd)
                       - np_loss(wm, prob.X, prob.Y, prob.c, True, wd)) / (2 * h)
        np.testing.assert_allclose(grads[l], fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())


def test_relu_on_factorization_uses_the_identity_input():
    """Without an input (factorization) the ReLU network acts on I: output W_L σ(⋯σ(W_1))."""
    rng = np.random.default_rng(2)
    phi = rng.standard_normal((5, 5))
    net = dl.DeepLinearNetwork(3, 5, init="gaussian", init_scale=1.0, seed=4, activation="relu")
    ws = net.weights
    loss, _, grads = dl.loss_and_gradients(net, dl.Factorization(phi, reduction="sum"))
    I = np.eye(5)
    assert np.isclose(loss, np_loss(ws, I, phi, 1.0, True), rtol=1e-13)
    for g, gn in zip(grads, np_grads(ws, I, phi, 1.0, True)):
        np.testing.assert_allclose(g, gn, rtol=1e-12, atol=1e-15)


# -- training --------------------------------------------------------------------------------------

@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("opt", [dl.GD(lr=5.0), dl.GD(lr=1.0, momentum=0.9, weight_decay=1e-3),
                                 dl.Adam(lr=1e-2)], ids=["gd", "momentum", "adam"])
def test_training_matches_numpy(relu, opt):
    prob = small_classification(seed=5, d=8, n=30, K=3)
    net = dl.DeepLinearNetwork(4, dims=[8, 10, 10, 10, 3], init="orthogonal", init_scale=1.0, seed=7,
                               activation="relu" if relu else None)
    w0 = net.weights
    steps = 250
    res = dl.train(net, prob, opt, steps, progress=False)
    ref, ws = np_train(w0, prob.X, prob.Y, prob.c, relu, opt, steps)
    assert res.status == "max_steps" and res.train_loss.shape == ref.shape
    assert ref[-1] < 0.7 * ref[0]                       # it learned something (random labels: a floor)
    np.testing.assert_allclose(res.train_loss, ref, rtol=1e-10, atol=0)
    for a, b in zip(net.weights, ws):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    acc = np.mean(np.argmax(np_forward(ws, prob.X, relu)[1], axis=0) == prob.y)
    assert res.train_accuracy == acc and res.test_accuracy is None


def test_float32_relu_training_follows_float64():
    prob = small_classification(seed=1, d=8, n=30)
    kw = dict(dims=[8, 10, 10, 3], init="orthogonal", init_scale=1.0, seed=2, activation="relu")
    r64 = dl.train(dl.DeepLinearNetwork(3, **kw), prob, dl.GD(lr=0.5), 100, progress=False)
    r32 = dl.train(dl.DeepLinearNetwork(3, dtype=np.float32, **kw), prob, dl.GD(lr=0.5), 100, progress=False)
    np.testing.assert_allclose(r32.train_loss, r64.train_loss, rtol=1e-4)


def test_checkpoint_resume_of_a_relu_network_is_exact(tmp_path):
    prob = small_classification(seed=3)
    kw = dict(dims=[6, 8, 8, 3], init="orthogonal", init_scale=1.0, seed=1, activation="relu")
    full = dl.train(dl.DeepLinearNetwork(3, **kw), prob, dl.Adam(lr=1e-2), 60, progress=False)
    path = tmp_path / "ck.npz"
    dl.train(dl.DeepLinearNetwork(3, **kw), prob, dl.Adam(lr=1e-2), 30, progress=False, checkpoint=path)
    net = dl.DeepLinearNetwork(3, **kw)
    res = dl.train(net, prob, dl.Adam(lr=1e-2), 60, progress=False, checkpoint=path)
    np.testing.assert_array_equal(res.train_loss, full.train_loss)
    # a linear network does not resume a ReLU network's checkpoint
    with pytest.raises(ValueError, match="checkpoint"):
        dl.train(dl.DeepLinearNetwork(3, dims=kw["dims"], seed=1), prob, dl.Adam(lr=1e-2), 60,
                 progress=False, checkpoint=path)


def test_tracking_a_relu_network_records_singular_values():
    prob = dl.problems.factorization(8, rank=2, seed=0)
    net = dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=0, activation="relu")
    res = dl.train(net, prob, dl.GD(lr=1.0), 20, progress=False, track=dl.Tracking("full", every=10))
    sv = res.tracking["singular_values"]
    np.testing.assert_allclose(sv[-1], [np.linalg.svd(w, compute_uv=False) for w in net.weights], rtol=1e-12)
    with pytest.raises(ValueError, match="activation"):
        dl.train(dl.DeepLinearNetwork(3, 8, seed=0, activation="relu"), prob, dl.GD(lr=1.0), 5,
                 progress=False, track="structured")


def test_linear_only_operations_refuse_a_relu_network():
    prob = dl.problems.factorization(8, rank=2, seed=0)
    net = dl.DeepLinearNetwork(3, 8, seed=0, activation="relu")
    for call in (net.end_to_end, lambda: dl.invariant_basis(net, prob), lambda: dl.compress(net, prob)):
        with pytest.raises(ValueError, match="net: .*linear network"):
            call()
    basis = dl.invariant_basis(dl.DeepLinearNetwork(3, 8, seed=0), prob)
    with pytest.raises(ValueError, match="net: .*linear network"):
        dl.structure_residual(net, basis)
    with pytest.raises(ValueError, match="activation"):
        dl.DeepLinearNetwork(3, 8, activation="tanh")
    # one layer has no hidden layer: linear whatever the activation
    assert dl.DeepLinearNetwork(1, 4, activation="relu").end_to_end().shape == (4, 4)
    copy = net.copy()
    assert copy.activation == "relu" and "relu" in repr(copy)


# -- classification problem --------------------------------------------------------------------------

def test_classification_problem_maps_labels_and_builds_one_hot():
    X = np.random.default_rng(0).standard_normal((4, 6))
    labels = np.array([7, -2, 7, 3, -2, 3])
    prob = dl.Classification(X, labels, test=(X[:, :3], labels[:3]))
    np.testing.assert_array_equal(prob.classes, [-2, 3, 7])
    np.testing.assert_array_equal(prob.y, [2, 0, 2, 1, 0, 1])
    np.testing.assert_array_equal(prob.classes[prob.y], labels)
    assert prob.Y.shape == (3, 6) and (prob.Y.sum(axis=0) == 1).all() and prob.Y[2, 0] == 1
    assert prob.c == 1 / 18 and dl.Classification(X, labels, reduction="sum").c == 1.0
    assert prob.shape == (3, 4)
    for a in (prob.X, prob.Y, prob.y, prob.labels):
        assert not a.flags.writeable
    X[0, 0] = 99.0  # the problem keeps its own copy
    assert prob.X[0, 0] != 99.0


def test_test_accuracy_in_the_result():
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((5, 3)) * 3
    y = np.arange(60) % 3
    X = centers[:, y] + 0.3 * rng.standard_normal((5, 60))
    prob = dl.Classification(X[:, :40], y[:40] + 10, test=(X[:, 40:], y[40:] + 10))
    net = dl.DeepLinearNetwork(3, dims=[5, 16, 16, 3], init_scale=1.0, seed=0, activation="relu")
    res = dl.train(net, prob, dl.GD(lr=0.5), 300, progress=False)
    pred = prob.predict(net, X[:, 40:])
    assert res.test_accuracy == np.mean(pred == y[40:] + 10)
    assert res.train_accuracy > 0.9 and res.test_accuracy > 0.9
    assert res.summary()["test_accuracy"] == res.test_accuracy


@pytest.mark.parametrize("make, err, match", [
    (lambda X: dl.Classification(X, np.zeros(10, dtype=int)), ValueError, "labels: need at least 2 classes"),
    (lambda X: dl.Classification(X, np.arange(10) % 2 + 0.5), TypeError, "labels: must be an integer"),
    (lambda X: dl.Classification(X, (np.arange(10) % 2).astype(float)), TypeError, "astype"),
    (lambda X: dl.Classification(X, np.arange(10) % 2 == 0), TypeError, "labels"),
    (lambda X: dl.Classification(np.where(np.eye(3, 10) > 0, np.nan, X), np.arange(10) % 2), ValueError,
     "X: contains NaN"),
    (lambda X: dl.Classification(X, np.arange(9) % 2), ValueError, "labels: has 9 labels but X has 10"),
    (lambda X: dl.Classification(X, (np.arange(10) % 2).reshape(2, 5)), ValueError, "labels: must be 1-D"),
    (lambda X: dl.Classification(X, np.arange(10) % 2, test=(X[:, :4], np.arange(3))), ValueError,
     "labels_test: has 3 labels"),
    (lambda X: dl.Classification(X, np.arange(10) % 2, test=(X[:2], np.arange(10) % 2)), ValueError,
     "X_test: has 2 rows"),
    (lambda X: dl.Classification(X, np.arange(10) % 2, test=(X, np.arange(10) % 3)), ValueError,
     "labels_test: classes not in"),
    (lambda X: dl.Classification(X, np.arange(10) % 2, test=X), TypeError, "test: must be a tuple"),
])
def test_bad_classification_input(make, err, match):
    X = np.random.default_rng(0).standard_normal((3, 10))
    with pytest.raises(err, match=match):
        make(X)


def test_bad_features_input():
    net = dl.DeepLinearNetwork(2, dims=[3, 4, 2], activation="relu")
    with pytest.raises(ValueError, match="X: must have d_0 = 3 rows"):
        net.features(np.ones((4, 5)))
    with pytest.raises(ValueError, match="X: contains NaN"):
        net.forward(np.full((3, 5), np.nan))
    with pytest.raises(ValueError, match="problem"):
        dl.train(net, dl.Classification(np.ones((3, 4)), np.arange(4) % 3), dl.GD(), 1, progress=False)
