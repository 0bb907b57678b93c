"""Issue 15, finding 8: no silent NaN/inf from invariant_basis (zero init) or rho_schedule
(overflowing recursion): a ValueError naming the argument, or a warning."""

import math

import numpy as np
import pytest

import deeplinear as dl


@pytest.mark.parametrize("method", ["gradient", "closed_form"])
def test_invariant_basis_of_a_zero_init_is_refused(method):
    net = dl.DeepLinearNetwork(3, 40, init_scale=0.0)
    with pytest.raises(ValueError, match="^net: .*zero"):
        dl.invariant_basis(net, dl.problems.factorization(40, 3), method=method)


def test_rho_schedule_overflow_warns():
    with pytest.warns(RuntimeWarning, match="rho_schedule: .*overflow"):
        rho = dl.rho_schedule(10.0, 10.0, 3, 10)
    # the values before the overflow are the recursion's (plain Python oracle)
    ref = [10.0]
    for _ in range(3):
        ref.append(ref[-1] - 10.0 * ref[-1] ** 5)
    np.testing.assert_array_equal(rho[:4], ref)
    assert not np.isfinite(rho).all()


def test_rho_schedule_finite_does_not_warn():
    rho = dl.rho_schedule(0.1, 0.5, 3, 50)  # pytest runs with filterwarnings=error
    r = 0.1
    for _ in range(50):
        r -= 0.5 * r ** 5
    assert math.isclose(rho[-1], r, rel_tol=0, abs_tol=0)
