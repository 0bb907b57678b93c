"""Issue 15, finding 3: a compressed network is tied to the problem (and basis) it was
compressed for; training it on another problem is refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl


def test_another_problem_is_refused():
    net = dl.DeepLinearNetwork(3, 20, init_scale=0.3, seed=1)
    prob_a = dl.problems.factorization(20, 2, seed=1)
    prob_b = dl.problems.factorization(20, 2, seed=2)
    comp = dl.compress(net, prob_a)
    with pytest.raises(ValueError, match="^problem: .*compressed for another problem"):
        dl.train(comp, prob_b, dl.GD(lr=0.1), 10, progress=False)
    assert comp.exact and comp.steps_trained == 0
    # another reduction is another loss: refused too
    with pytest.raises(ValueError, match="^problem: "):
        dl.train(comp, dl.Factorization(prob_a.target, reduction="sum"), dl.GD(lr=0.1), 10, progress=False)


def test_the_same_problem_and_an_equal_copy_are_accepted():
    net = dl.DeepLinearNetwork(3, 20, init_scale=0.3, seed=1)
    prob = dl.problems.factorization(20, 2, seed=1)
    comp = dl.compress(net, prob)
    res = dl.train(comp, dl.Factorization(np.asfortranarray(prob.target)), dl.GD(lr=0.1), 10, progress=False)
    # the reported loss is the lifted network's on that problem
    ws = comp.lift().weights
    np.testing.assert_allclose(res.final_loss, prob.loss(np.linalg.multi_dot(ws[::-1])), rtol=1e-10)


def test_a_reduced_network_is_tied_to_its_reduced_problem():
    comp, red = dl.reduced_network(1000, 3, [1.0, 0.5], init_scale=0.1, seed=0)
    _, other = dl.reduced_network(1000, 3, [1.0, 0.5], init_scale=0.1, seed=1)
    with pytest.raises(ValueError, match="^problem: "):
        dl.train(comp, other, dl.GD(lr=0.1), 5, progress=False)
    dl.train(comp, red, dl.GD(lr=0.1), 5, progress=False)
