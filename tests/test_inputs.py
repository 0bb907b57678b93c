"""Problems own their data (issue 14): any layout, strides, float or integer dtype and
read-only arrays give the same run as the C-ordered float64 array; the caller's array can be
changed afterwards without effect; complex and object arrays are refused naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl

D = 12


def base():
    rng = np.random.default_rng(0)
    return (rng.integers(-1, 2, (D, 2)) @ rng.integers(-1, 2, (2, D))).astype(np.float64)  # integer, rank 2


def variants(t):
    ro = t.copy()
    ro.flags.writeable = False
    big = np.zeros((2 * D, 3 * D))
    big[::2, ::3] = t
    return {"fortran": np.asfortranarray(t), "strided": big[::2, ::3], "float32": t.astype(np.float32),
            "int": t.astype(np.int64), "read-only": ro, "transposed-view": np.ascontiguousarray(t.T).T,
            "list": t.tolist()}


def run(prob):
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=2)
    return dl.train(net, prob, dl.GD(lr=0.05, momentum=0.5), 30, progress=False).train_loss


@pytest.mark.parametrize("name", list(variants(base())))
def test_factorization_inputs_give_the_same_run(name):
    t = base()
    want = run(dl.Factorization(t))
    got = run(dl.Factorization(variants(t)[name]))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["fortran", "strided", "int", "read-only"])
def test_completion_and_regression_inputs(name):
    t = base()
    mask = (np.arange(D * D).reshape(D, D) % 3 != 0).astype(np.float64)
    want = run(dl.Completion(t, mask))
    got = run(dl.Completion(variants(t)[name], variants(mask)[name]))
    np.testing.assert_array_equal(got, want)
    x = t[:, :8]
    want = run(dl.Regression(x, 2 * x))
    got = run(dl.Regression(variants(t)[name][:, :8] if name != "list" else x, 2 * x))
    np.testing.assert_array_equal(got, want)


def test_weights_from_any_layout():
    w = [np.random.default_rng(i).standard_normal((D, D)) for i in range(3)]
    a = dl.DeepLinearNetwork.from_weights(w)
    b = dl.DeepLinearNetwork.from_weights([np.asfortranarray(x) for x in w])
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x, y)


def _layouts(rng):
    """The same kind of matrix in several layouts: each the view itself (not a copy)."""
    big = rng.standard_normal((2 * D + 1, 3 * D + 2))
    sq = rng.standard_normal((D, D))
    return {"C": sq, "F": np.asfortranarray(sq), "strided": big[1::2, 2::3][:D, :D],
            "reversed": sq[::-1, ::-1], "transposed": big[:D, :D].T, "column_strided": big[:D, ::3][:, :D],
            "float32": sq.astype(np.float32), "int": (10 * sq).astype(np.int64)}


@pytest.mark.parametrize("layout", ["C", "F", "strided", "reversed", "transposed", "column_strided",
                                    "float32", "int"])
def test_weights_copied_straight_from_any_strides(layout):
    """The core copies weights of any strides itself (one pass, no C-ordered copy first): the
    layers equal NumPy's C-ordered float64 copies of the views, and the caller's arrays stay."""
    rng = np.random.default_rng(7)
    w = [_layouts(rng)[layout] for _ in range(2)]
    before = [x.copy() for x in w]
    net = dl.DeepLinearNetwork.from_weights(w, dtype=np.float64)
    for got, x in zip(net.weights, w):
        np.testing.assert_array_equal(got, np.array(x, dtype=np.float64, order="C"))
    for x, b in zip(w, before):
        np.testing.assert_array_equal(x, b)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "reversed", "transposed", "column_strided"])
@pytest.mark.parametrize("where", [(0, 0), (D - 1, D - 1), (D // 2, 3)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_weights_non_finite_in_any_layout_named(layout, where, bad):
    rng = np.random.default_rng(8)
    w0, w1 = _layouts(rng)[layout], _layouts(rng)[layout]
    w1[where] = bad
    with pytest.raises(ValueError, match=r"weights\[1\]: contains NaN or Inf"):
        dl.DeepLinearNetwork.from_weights([w0, w1])


def test_mutating_the_callers_array_changes_nothing():
    t = base()
    prob = dl.Factorization(t)
    want = run(dl.Factorization(t.copy()))
    t[:] = 0.0
    np.testing.assert_array_equal(run(prob), want)
    assert not prob.target.flags.writeable and prob.target.flags.c_contiguous
    with pytest.raises(ValueError):
        prob.target[0, 0] = 1.0
    # a compressed network's problem data cannot go stale either
    net = dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=2)
    t2 = base()
    prob2 = dl.Factorization(t2)
    comp = dl.compress(net, prob2)
    t2 *= 3.0
    res = dl.train(comp, prob2, dl.GD(lr=0.05), 10, progress=False)
    ref = dl.train(dl.compress(dl.DeepLinearNetwork(3, D, init_scale=0.5, seed=2), dl.Factorization(base())),
                   dl.Factorization(base()), dl.GD(lr=0.05), 10, progress=False)
    np.testing.assert_array_equal(res.train_loss, ref.train_loss)


@pytest.mark.parametrize("make, name", [
    (lambda a: dl.Factorization(a + 0j), "target"),
    (lambda a: dl.Factorization(a.astype(object)), "target"),
    (lambda a: dl.Completion(a, np.ones_like(a) + 0j), "mask"),
    (lambda a: dl.Regression(a.astype(object), a), "X"),
    (lambda a: dl.Regression(a, a + 1j), "Y"),
    (lambda a: dl.DeepLinearNetwork.from_weights([a + 0j]), "weights[0]"),
])
def test_complex_and_object_refused(make, name):
    with pytest.raises(TypeError, match=rf"^{name.replace('[', '.').replace(']', '.')}:"):
        make(base())
