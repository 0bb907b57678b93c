"""Issue 15, finding 6: a callback that trains its own network (re-entrant train) is refused,
instead of the outer result describing fewer steps than the network took."""

import numpy as np
import pytest

import deeplinear as dl


def test_train_from_inside_its_own_callback_is_refused():
    prob = dl.problems.factorization(8, 2, seed=0)
    net = dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=0)
    seen = []

    def cb(step, n):
        seen.append(step)
        if step == 5:
            dl.train(n, prob, dl.GD(lr=0.5), 5, progress=False)

    with pytest.raises(ValueError, match="^net: .*being trained"):
        dl.train(net, prob, dl.GD(lr=0.5), 10, callback=cb, callback_every=5, progress=False)
    assert seen == [0, 5]
    # the network took exactly the outer run's 5 steps, none from the refused inner call
    ref = dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=0)
    dl.train(ref, prob, dl.GD(lr=0.5), 5, progress=False)
    for a, b in zip(net.weights, ref.weights):
        np.testing.assert_array_equal(a, b)
    # the guard is released: the network trains again
    assert dl.train(net, prob, dl.GD(lr=0.5), 3, progress=False).n_steps == 3


def test_callback_may_train_another_network():
    prob = dl.problems.factorization(8, 2, seed=0)
    net, other = dl.DeepLinearNetwork(3, 8, seed=0), dl.DeepLinearNetwork(3, 8, seed=1)
    inner = []
    res = dl.train(net, prob, dl.GD(lr=0.5), 4, progress=False,
                   callback=lambda s, n: inner.append(dl.train(other, prob, dl.GD(lr=0.5), 1, progress=False)))
    assert res.n_steps == 4 and len(inner) == 2
