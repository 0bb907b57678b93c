"""Issue 15, finding 4: compressing with a rank below the target's numerical rank is not exact:
compress says so (exact=False, an ApproximationWarning) instead of claiming exact=True."""

import numpy as np
import pytest

import deeplinear as dl


def test_rank_below_the_target_rank_is_not_exact():
    prob = dl.problems.factorization(30, 3, seed=1)
    net = dl.DeepLinearNetwork(3, 30, init_scale=0.1, seed=1)
    with pytest.warns(dl.ApproximationWarning, match="rank 1 is below the target's numerical rank 3"):
        comp = dl.compress(net, prob, rank=1)
    assert comp.exact is False
    # the reason is real: the target is not in span(U_{L,1}) x span(V_{1,1}) (NumPy oracle)
    U, Vb = comp.basis.U[-1], comp.basis.V[0]
    outside = prob.target - U @ (U.T @ prob.target @ Vb) @ Vb.T
    assert np.linalg.norm(outside) > 0.1 * np.linalg.norm(prob.target)


def test_basis_of_too_low_rank_is_not_exact():
    prob = dl.problems.factorization(30, 3, seed=1)
    net = dl.DeepLinearNetwork(3, 30, init_scale=0.1, seed=1)
    basis = dl.invariant_basis(net, prob, rank=2)
    with pytest.warns(dl.ApproximationWarning, match="rank 2 is below"):
        assert dl.compress(net, prob, basis=basis).exact is False


@pytest.mark.parametrize("rank", [None, 3, 4])
def test_rank_at_or_above_the_target_rank_stays_exact(rank):
    prob = dl.problems.factorization(30, 3, seed=1)
    net = dl.DeepLinearNetwork(3, 30, init_scale=0.1, seed=1)
    comp = dl.compress(net, prob, rank=rank)  # no warning (filterwarnings=error)
    assert comp.exact is True
