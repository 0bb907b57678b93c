"""Issue 15, finding 11: wrong kinds of arguments give a TypeError/ValueError naming the argument
(not an AttributeError, LinAlgError or a message naming another argument)."""

import numpy as np
import pytest

import deeplinear as dl


@pytest.fixture
def prob():
    return dl.problems.factorization(12, 2, seed=0)


def test_compress_zero_network_is_refused(prob):
    net = dl.DeepLinearNetwork(3, 12, init_scale=0.0)
    with pytest.raises(ValueError, match="^net: "):
        dl.compress(net, prob)


def test_compress_from_weights_all_zero_is_refused(prob):
    net = dl.DeepLinearNetwork.from_weights([np.zeros((12, 12))] * 3)
    with pytest.raises(ValueError, match="^net: "):
        dl.compress(net, prob)


def test_compress_of_a_string_names_net(prob):
    with pytest.raises(TypeError, match="^net: "):
        dl.compress("net", prob)


def test_compress_of_a_compressed_network_names_net(prob):
    comp = dl.compress(dl.DeepLinearNetwork(3, 12, init_scale=1e-2), prob)
    with pytest.raises(TypeError, match="^net: .*already compressed"):
        dl.compress(comp, prob)


def test_structure_residual_of_a_compressed_network_names_net(prob):
    net = dl.DeepLinearNetwork(3, 12, init_scale=1e-2)
    comp = dl.compress(net, prob)
    basis = dl.invariant_basis(net, prob)
    with pytest.raises(TypeError, match="^net: "):
        dl.structure_residual(comp, basis)


def test_train_compressed_on_regression_names_problem(prob):
    comp = dl.compress(dl.DeepLinearNetwork(3, 12, init_scale=1e-2), prob)
    reg = dl.Regression(np.ones((12, 4)), np.ones((12, 4)))
    with pytest.raises(TypeError, match="^problem: "):
        dl.train(comp, reg, dl.GD(lr=0.1), 3, progress=False)


def test_huge_dims_names_dims():
    with pytest.raises(ValueError, match="^dims: "):
        dl.DeepLinearNetwork(2, dims=[1, 10**12, 1])


def test_huge_width_names_width():
    with pytest.raises(ValueError, match="^width: "):
        dl.DeepLinearNetwork(2, 10**7)


@pytest.mark.parametrize("init", ["orthogonal", "gaussian"])
def test_float32_overflow_of_init_scale_names_init_scale(init):
    with pytest.raises(ValueError, match="^init_scale: "):
        dl.DeepLinearNetwork(2, 5, init=init, init_scale=1e100, dtype=np.float32)
    # the largest representable scales still work
    net = dl.DeepLinearNetwork(2, 5, init=init, init_scale=1e30, dtype=np.float32)
    assert all(np.isfinite(w).all() for w in net.weights)
