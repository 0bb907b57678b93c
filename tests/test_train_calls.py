"""Short training calls in a loop (issue 16): the next call on the same network and problem
reuses the core trainer (its workspace, and the forward pass of the previous call's final
weights).  The reuse must be invisible: a loop of calls gives bit for bit what fresh trainers
give, a plain-GD loop what one long call gives, and any change of the weights or the objective
between calls is seen.  Oracles: the same calls on a fresh trainer each time (the cache
dropped), one long call, and the plain NumPy implementation of tests/oracle.py."""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl

import oracle

D, L, N = 12, 3, 6


def _problem(kind: str = "factorization"):
    rng = np.random.default_rng(7)
    phi = rng.standard_normal((D, D))
    if kind == "completion":
        return dl.Completion(phi, rng.random((D, D)) < 0.5)
    return dl.Factorization(phi)


def _net():
    return dl.DeepLinearNetwork(depth=L, width=D, init="orthogonal", init_scale=1.0, seed=3)


OPTIMIZERS = {
    "gd": dl.GD(lr=0.5),
    "gd_decay": dl.GD(lr=0.5, weight_decay=1e-2),
    "momentum": dl.GD(lr=0.3, momentum=0.9, weight_decay=1e-3),
    "nesterov": dl.GD(lr=0.3, momentum=0.9, nesterov=True),
    "adam": dl.Adam(lr=1e-2, weight_decay=1e-2),
}


def _loop(net, prob, opt, calls: int, fresh: bool):
    """``calls`` calls of steps=1; ``fresh``: each on a new core trainer (no reuse)."""
    losses = []
    for _ in range(calls):
        if fresh:
            net._trainer_cache = None
        res = dl.train(net, prob, opt, steps=1, progress=False)
        losses.append(res.train_loss.copy())
    return losses


@pytest.mark.parametrize("kind", ["factorization", "completion"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_reused_trainer_is_bit_identical_to_fresh_ones(name, kind, one_thread):
    opt, prob = OPTIMIZERS[name], _problem(kind)
    a, b = _net(), _net()
    got = _loop(a, prob, opt, N, fresh=False)
    want = _loop(b, prob, opt, N, fresh=True)
    for x, y in zip(got, want):
        assert np.array_equal(x, y)
    for wa, wb in zip(a.weights, b.weights):
        assert np.array_equal(wa, wb)


@pytest.mark.parametrize("name", ["gd", "gd_decay"])
def test_gd_loop_of_one_step_calls_equals_one_long_call(name, one_thread):
    """Plain GD has no optimizer state: N calls of one step are one call of N steps, bit for
    bit, losses included (the first loss of call k+1 is the last of call k)."""
    opt, prob = OPTIMIZERS[name], _problem()
    a, b = _net(), _net()
    losses = _loop(a, prob, opt, N, fresh=False)
    long = dl.train(b, prob, opt, steps=N, progress=False)
    for k, pair in enumerate(losses):
        assert pair.shape == (2,)
        assert pair[0] == long.train_loss[k] and pair[1] == long.train_loss[k + 1]
    for wa, wb in zip(a.weights, b.weights):
        assert np.array_equal(wa, wb)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_stateful_optimizer_starts_fresh_every_call(name, one_thread):
    """A call's optimizer state is fresh (documented): two calls of one step are two first
    steps of the optimizer, checked against the NumPy oracle from the weights in between."""
    opt, prob = OPTIMIZERS[name], _problem()
    net = _net()
    ref = oracle.problem_from_dl(prob)
    for _ in range(2):
        w0 = oracle.as64(net.weights)
        res = dl.train(net, prob, opt, steps=1, progress=False)
        want = oracle.train_like(w0, prob, opt, 1)
        assert res.train_loss[0] == pytest.approx(oracle.loss(w0, ref, opt.weight_decay), rel=1e-12)
        for w, v in zip(net.weights, want.weights):
            np.testing.assert_allclose(w, v, rtol=1e-11, atol=1e-13)


def test_weights_changed_between_calls_are_seen(one_thread):
    """A write to the weights between calls (the core's set_weight, as a checkpoint restore
    does) invalidates the cached forward pass: the next call's first loss is the loss at the
    new weights (NumPy oracle), not the previous call's last one."""
    prob, opt = _problem(), OPTIMIZERS["gd_decay"]
    net = _net()
    first = dl.train(net, prob, opt, steps=2, progress=False)
    rng = np.random.default_rng(1)
    new = [w + 0.1 * rng.standard_normal(w.shape) for w in net.weights]
    for i, w in enumerate(new):
        net._writable_core().set_weight(i, w)
    second = dl.train(net, prob, opt, steps=1, progress=False)
    ref = oracle.problem_from_dl(prob)
    assert second.train_loss[0] == pytest.approx(oracle.loss(new, ref, opt.weight_decay), rel=1e-12)
    assert second.train_loss[0] != first.train_loss[-1]
    # one layer only, by the same path: also seen
    w2 = net.weights
    w2[1] = w2[1] * 0.5
    net._writable_core().set_weight(1, w2[1])
    third = dl.train(net, prob, opt, steps=0, progress=False)
    assert third.train_loss[0] == pytest.approx(oracle.loss(w2, ref, opt.weight_decay), rel=1e-12)


def test_other_weight_decay_or_problem_between_calls(one_thread):
    """The cached forward pass is of the weights only: the next call's weight-decay term is
    its own, and another problem gets its own trainer (losses against the NumPy oracle)."""
    prob = _problem()
    net = _net()
    dl.train(net, prob, dl.GD(lr=0.5), steps=1, progress=False)
    w = oracle.as64(net.weights)
    ref = oracle.problem_from_dl(prob)
    res = dl.train(net, prob, dl.GD(lr=0.5, weight_decay=0.3), steps=0, progress=False)
    assert res.train_loss[0] == pytest.approx(oracle.loss(w, ref, 0.3), rel=1e-12)
    other = dl.Factorization(np.random.default_rng(9).standard_normal((D, D)))
    res = dl.train(net, other, dl.GD(lr=0.5), steps=0, progress=False)
    assert res.train_loss[0] == pytest.approx(oracle.loss(w, oracle.problem_from_dl(other)), rel=1e-12)
    res = dl.train(net, prob, dl.GD(lr=0.5), steps=0, progress=False)
    assert res.train_loss[0] == pytest.approx(oracle.loss(w, ref), rel=1e-12)


def test_float32_network_and_tracking_reuse(one_thread):
    """float32 networks reuse their trainer too; a tracked call after untracked ones (and the
    other way round) gives what fresh trainers give."""
    prob = _problem()
    runs = []
    for fresh in (False, True):
        net = dl.DeepLinearNetwork(depth=L, width=D, init="orthogonal", init_scale=1.0, seed=3,
                                   dtype=np.float32)
        out = []
        for track in (None, "full", None):
            if fresh:
                net._trainer_cache = None
            res = dl.train(net, prob, dl.GD(lr=0.5), steps=2, track=track, progress=False)
            out.append(res.train_loss)
            if track:
                out.append(np.asarray(res.tracking["singular_values"][0], dtype=np.float64).ravel())
        out.extend(net.weights)
        runs.append(out)
    for x, y in zip(*runs):
        assert np.array_equal(x, y)


def test_one_trainer_is_kept_in_the_process(one_thread):
    """Only the network trained last keeps its trainer (bounded memory between calls); the
    other one gets a new trainer on its next call, with the same results as before."""
    prob, opt = _problem(), OPTIMIZERS["gd"]
    a, b, ref = _net(), _net(), _net()
    dl.train(a, prob, opt, steps=1, progress=False)
    assert a._trainer_cache is not None
    dl.train(b, prob, opt, steps=1, progress=False)
    assert a._trainer_cache is None and b._trainer_cache is not None
    res = dl.train(a, prob, opt, steps=1, progress=False)
    want = dl.train(ref, prob, opt, steps=2, progress=False)
    assert np.array_equal(res.train_loss, want.train_loss[1:])
    for x, y in zip(a.weights, ref.weights):
        assert np.array_equal(x, y)
