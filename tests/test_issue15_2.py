"""Issue 15, finding 2: a network being trained refuses a second, concurrent train (from another
thread) with a ValueError naming net, instead of interleaving the two runs' updates."""

import threading

import numpy as np
import pytest

import deeplinear as dl


def test_concurrent_train_of_the_same_network_is_refused():
    prob = dl.problems.factorization(8, 2, seed=0)
    net = dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=0)
    inside, release = threading.Event(), threading.Event()
    errors, results = [], []

    def hold(step, n):  # keeps the first run in training until the main thread has tried
        if step == 0:
            inside.set()
            release.wait(30)

    def first():
        try:
            results.append(dl.train(net, prob, dl.GD(lr=0.5), 10, callback=hold, progress=False))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(ValueError, match="^net: .*being trained"):
            dl.train(net, prob, dl.GD(lr=0.5), 10, progress=False)
    finally:
        release.set()
        t.join()
    assert not errors and results[0].n_steps == 10
    # the network holds exactly the first run's 10 steps: the same as a sequential run
    ref = dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=0)
    dl.train(ref, prob, dl.GD(lr=0.5), 10, progress=False)
    for a, b in zip(net.weights, ref.weights):
        np.testing.assert_array_equal(a, b)
    # once the first run is over the network trains again
    assert dl.train(net, prob, dl.GD(lr=0.5), 2, progress=False).n_steps == 2


def test_different_networks_train_concurrently():
    prob = dl.problems.factorization(8, 2, seed=0)
    nets = [dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=s) for s in (0, 1)]
    out = [None, None]

    def run(i):
        out[i] = dl.train(nets[i], prob, dl.GD(lr=0.5), 20, progress=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.n_steps for r in out] == [20, 20]
