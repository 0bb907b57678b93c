"""Issue 15, finding 1: a checkpoint identifies its run (initial weights, problem data,
optimizer, settings), so the same call with another seed or another target of the same shape
does not resume it."""

import numpy as np
import pytest

import deeplinear as dl

N, F = dl.DeepLinearNetwork, dl.problems.factorization


def _train(net, prob, path, steps=10, lr=5.0):
    return dl.train(net, prob, dl.GD(lr=lr), steps, checkpoint=path, progress=False)


@pytest.mark.parametrize("net_seed,prob_seed,differs", [
    (2, 1, "start"),  # another network seed
    (1, 2, "data"),   # another target of the same shape
    (2, 2, "data, .*start"),  # both, as in the report
])
def test_another_seed_is_another_run(net_seed, prob_seed, differs, tmp_path):
    path = tmp_path / "c.npz"
    _train(N(3, 12, seed=1), F(12, 3, seed=1), path)
    with pytest.raises(ValueError, match=f"^checkpoint: .*another run.*{differs}"):
        _train(N(3, 12, seed=net_seed), F(12, 3, seed=prob_seed), path)


def test_other_given_weights_are_another_run(tmp_path):
    path = tmp_path / "c.npz"
    rng = np.random.default_rng(0)
    w = [0.3 * rng.standard_normal((6, 6)) for _ in range(2)]
    prob = F(6, 2, seed=0)
    _train(N.from_weights(w), prob, path, lr=0.1)
    w[0] = w[0].copy()
    w[0][0, 0] += 1e-12
    with pytest.raises(ValueError, match="^checkpoint: .*another run.*start"):
        _train(N.from_weights(w), prob, path, lr=0.1)


def test_the_same_run_still_resumes(tmp_path):
    path = tmp_path / "c.npz"
    _train(N(3, 12, seed=1), F(12, 3, seed=1), path, steps=10, lr=0.5)
    res = _train(N(3, 12, seed=1), F(12, 3, seed=1), path, steps=20, lr=0.5)
    ref = dl.train(N(3, 12, seed=1), F(12, 3, seed=1), dl.GD(lr=0.5), 20, progress=False)
    np.testing.assert_array_equal(res.train_loss, ref.train_loss)
    # and in the same process, with the network object that already trained
    net, prob = N(3, 12, seed=1), F(12, 3, seed=1)
    path2 = tmp_path / "d.npz"
    _train(net, prob, path2, steps=10, lr=0.5)
    res = _train(net, prob, path2, steps=20, lr=0.5)
    np.testing.assert_array_equal(res.train_loss, ref.train_loss)
