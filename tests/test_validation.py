"""Bad inputs across the public API, and the compiled core's own (second-line) checks.

Every entry of BAD_INPUTS is ``(description, callable, exception type, name)``: calling it must
raise that exception with a message that starts with ``name`` (the argument's name) followed by
a colon.
"""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl
from deeplinear import _core

D = 4


# -- building blocks (fresh objects for every call) ----------------------------------------------------

def A(shape=(D, D), dtype=np.float64, seed=0):
    """A valid C-contiguous float array."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def with_value(value, at=(1, 2), shape=(D, D)):
    a = A(shape)
    a[at] = value
    return a


def fortran(shape=(D, D + 2)):
    """A Fortran-ordered array (the transpose of a C array): not C-contiguous."""
    return A(shape[::-1]).T


def strided(shape=(D, D)):
    return A((shape[0], 2 * shape[1]))[:, ::2]


def mask(shape=(D, D), p=0.5):
    return (np.random.default_rng(1).random(shape) < p).astype(np.float64)


def net(width=D, depth=2, **kw):
    return dl.DeepLinearNetwork(depth, width, seed=0, **kw)


def fact(shape=(D, D)):
    return dl.Factorization(A(shape))


def train(n=None, p=None, opt=None, steps=3, **kw):
    kw.setdefault("progress", False)
    return dl.train(net() if n is None else n, fact() if p is None else p,
                    dl.GD(lr=0.01) if opt is None else opt, steps, **kw)


def weights(*shapes):
    return [A(s, seed=i) for i, s in enumerate(shapes)]


class NotAnOptimizer:
    lr = 0.1


BAD_INPUTS = [
    # --- DeepLinearNetwork(...) ---------------------------------------------------------------
    ("depth 0", lambda: dl.DeepLinearNetwork(0, D), ValueError, "depth"),
    ("depth negative", lambda: dl.DeepLinearNetwork(-2, D), ValueError, "depth"),
    ("depth float", lambda: dl.DeepLinearNetwork(2.0, D), TypeError, "depth"),
    ("depth bool", lambda: dl.DeepLinearNetwork(True, D), TypeError, "depth"),
    ("width 0", lambda: dl.DeepLinearNetwork(2, 0), ValueError, "width"),
    ("width negative", lambda: dl.DeepLinearNetwork(2, -3), ValueError, "width"),
    ("width float", lambda: dl.DeepLinearNetwork(2, 3.0), TypeError, "width"),
    ("width and dims", lambda: dl.DeepLinearNetwork(2, 3, dims=[3, 3, 3]), ValueError, "width"),
    ("neither width nor dims", lambda: dl.DeepLinearNetwork(2), ValueError, "width"),
    ("dims too short", lambda: dl.DeepLinearNetwork(3, dims=[4, 4, 4]), ValueError, "dims"),
    ("dims too long", lambda: dl.DeepLinearNetwork(1, dims=[4, 4, 4]), ValueError, "dims"),
    ("dims with a 0", lambda: dl.DeepLinearNetwork(2, dims=[4, 0, 4]), ValueError, "dims"),
    ("dims with a float", lambda: dl.DeepLinearNetwork(2, dims=[4, 2.5, 4]), TypeError, "dims"),
    ("dims a string", lambda: dl.DeepLinearNetwork(2, dims="444"), TypeError, "dims"),
    ("dims an int", lambda: dl.DeepLinearNetwork(2, dims=4), TypeError, "dims"),
    ("init unknown", lambda: dl.DeepLinearNetwork(2, D, init="xavier"), ValueError, "init"),
    ("init wrong case", lambda: dl.DeepLinearNetwork(2, D, init="Orthogonal"), ValueError, "init"),
    ("init None", lambda: dl.DeepLinearNetwork(2, D, init=None), ValueError, "init"),
    ("init_scale NaN", lambda: dl.DeepLinearNetwork(2, D, init_scale=np.nan), ValueError, "init_scale"),
    ("init_scale inf", lambda: dl.DeepLinearNetwork(2, D, init_scale=np.inf), ValueError, "init_scale"),
    ("init_scale str", lambda: dl.DeepLinearNetwork(2, D, init_scale="1e-3"), TypeError, "init_scale"),
    ("seed negative", lambda: dl.DeepLinearNetwork(2, D, seed=-1), ValueError, "seed"),
    ("seed >= 2**64", lambda: dl.DeepLinearNetwork(2, D, seed=2**64), ValueError, "seed"),
    ("seed float", lambda: dl.DeepLinearNetwork(2, D, seed=1.5), TypeError, "seed"),
    ("seed None", lambda: dl.DeepLinearNetwork(2, D, seed=None), TypeError, "seed"),
    ("dtype float16", lambda: dl.DeepLinearNetwork(2, D, dtype=np.float16), TypeError, "dtype"),
    ("dtype int64", lambda: dl.DeepLinearNetwork(2, D, dtype=np.int64), TypeError, "dtype"),
    ("dtype complex", lambda: dl.DeepLinearNetwork(2, D, dtype=np.complex128), TypeError, "dtype"),
    ("dtype longdouble", lambda: dl.DeepLinearNetwork(2, D, dtype=np.longdouble), TypeError, "dtype"),
    ("dtype nonsense", lambda: dl.DeepLinearNetwork(2, D, dtype="banana"), TypeError, "dtype"),
    # --- DeepLinearNetwork.from_weights ------------------------------------------------------
    ("from_weights chain mismatch",
     lambda: dl.DeepLinearNetwork.from_weights(weights((3, 4), (5, 2))), ValueError, "weights[1]"),
    ("from_weights chain mismatch later",
     lambda: dl.DeepLinearNetwork.from_weights(weights((3, 4), (5, 3), (2, 4))), ValueError, "weights[2]"),
    ("from_weights empty list", lambda: dl.DeepLinearNetwork.from_weights([]), TypeError, "weights"),
    ("from_weights one array", lambda: dl.DeepLinearNetwork.from_weights(A()), TypeError, "weights"),
    ("from_weights generator",
     lambda: dl.DeepLinearNetwork.from_weights(w for w in weights((3, 3))), TypeError, "weights"),
    ("from_weights NaN", lambda: dl.DeepLinearNetwork.from_weights([with_value(np.nan)]),
     ValueError, "weights[0]"),
    ("from_weights +inf", lambda: dl.DeepLinearNetwork.from_weights([A(), with_value(np.inf)]),
     ValueError, "weights[1]"),
    ("from_weights -inf", lambda: dl.DeepLinearNetwork.from_weights([with_value(-np.inf)]),
     ValueError, "weights[0]"),
    ("from_weights bool array",
     lambda: dl.DeepLinearNetwork.from_weights([np.ones((3, 3), dtype=bool)]), TypeError, "weights[0]"),
    ("from_weights complex", lambda: dl.DeepLinearNetwork.from_weights([A() + 1j]), TypeError, "weights[0]"),
    ("from_weights object", lambda: dl.DeepLinearNetwork.from_weights([A().astype(object)]),
     TypeError, "weights[0]"),
    ("from_weights 1-D", lambda: dl.DeepLinearNetwork.from_weights([np.ones(3)]), ValueError, "weights[0]"),
    ("from_weights 3-D", lambda: dl.DeepLinearNetwork.from_weights([np.ones((2, 2, 2))]),
     ValueError, "weights[0]"),
    ("from_weights empty array", lambda: dl.DeepLinearNetwork.from_weights([np.ones((0, 3))]),
     ValueError, "weights[0]"),
    ("from_weights mixed dtypes",
     lambda: dl.DeepLinearNetwork.from_weights([A(), A(dtype=np.float32)]), TypeError, "weights"),
    ("from_weights dtype int", lambda: dl.DeepLinearNetwork.from_weights([A()], dtype=int), TypeError, "dtype"),
    ("from_weights not an array", lambda: dl.DeepLinearNetwork.from_weights(["abc"]), TypeError, "weights[0]"),
    # --- network methods -------------------------------------------------------------------------
    ("weight(0)", lambda: net().weight(0), ValueError, "layer"),
    ("weight(depth + 1)", lambda: net(depth=2).weight(3), ValueError, "layer"),
    ("weight('1')", lambda: net().weight("1"), TypeError, "layer"),
    # --- Factorization ---------------------------------------------------------------------------
    ("target NaN", lambda: dl.Factorization(with_value(np.nan)), ValueError, "target"),
    ("target +inf", lambda: dl.Factorization(with_value(np.inf)), ValueError, "target"),
    ("target -inf", lambda: dl.Factorization(with_value(-np.inf)), ValueError, "target"),
    ("target NaN float32", lambda: dl.Factorization(with_value(np.nan).astype(np.float32)), ValueError, "target"),
    ("target bool", lambda: dl.Factorization(np.ones((D, D), dtype=bool)), TypeError, "target"),
    ("target complex", lambda: dl.Factorization(A().astype(np.complex128)), TypeError, "target"),
    ("target object", lambda: dl.Factorization(A().astype(object)), TypeError, "target"),
    ("target ragged list", lambda: dl.Factorization([[1.0, 2.0], [3.0]]), ValueError, "target"),
    ("target 1-D", lambda: dl.Factorization(np.ones(D)), ValueError, "target"),
    ("target 3-D", lambda: dl.Factorization(np.ones((D, D, 1))), ValueError, "target"),
    ("target 0-D", lambda: dl.Factorization(np.array(1.0)), ValueError, "target"),
    ("target empty rows", lambda: dl.Factorization(np.ones((0, D))), ValueError, "target"),
    ("target empty cols", lambda: dl.Factorization(np.ones((D, 0))), ValueError, "target"),
    ("target a float", lambda: dl.Factorization(1.0), TypeError, "target"),
    ("target a dict", lambda: dl.Factorization({"a": 1}), TypeError, "target"),
    ("reduction unknown", lambda: dl.Factorization(A(), reduction="avg"), ValueError, "reduction"),
    ("reduction None", lambda: dl.Factorization(A(), reduction=None), ValueError, "reduction"),
    ("reduction upper case", lambda: dl.Factorization(A(), reduction="MEAN"), ValueError, "reduction"),
    # --- Completion ------------------------------------------------------------------------------
    ("mask shape", lambda: dl.Completion(A(), mask((D, D + 1))), ValueError, "mask"),
    ("mask transposed shape", lambda: dl.Completion(A((3, 5)), mask((5, 3))), ValueError, "mask"),
    ("mask NaN", lambda: dl.Completion(A(), with_value(np.nan) * 0), ValueError, "mask"),
    ("mask inf", lambda: dl.Completion(A(), np.where(mask() > 0, np.inf, 0.0)), ValueError, "mask"),
    ("mask 0.5", lambda: dl.Completion(A(), mask() * 0.5), ValueError, "mask"),
    ("mask int 2", lambda: dl.Completion(A(), 2 * mask().astype(np.int64)), ValueError, "mask"),
    ("mask -1", lambda: dl.Completion(A(), -mask()), ValueError, "mask"),
    ("mask almost 1", lambda: dl.Completion(A(), mask() * (1 + 1e-12)), ValueError, "mask"),
    ("mask complex", lambda: dl.Completion(A(), mask().astype(np.complex128)), TypeError, "mask"),
    ("mask object", lambda: dl.Completion(A(), mask().astype(object)), TypeError, "mask"),
    ("mask string", lambda: dl.Completion(A(), "all"), TypeError, "mask"),
    ("mask 1-D", lambda: dl.Completion(A(), np.ones(D, dtype=bool)), ValueError, "mask"),
    ("mask 3-D", lambda: dl.Completion(A(), np.ones((D, D, 1))), ValueError, "mask"),
    ("mask empty", lambda: dl.Completion(A(), np.ones((0, 0), dtype=bool)), ValueError, "mask"),
    ("mask bool list wrong shape", lambda: dl.Completion(A(), [[True, False]]), ValueError, "mask"),
    ("completion target NaN", lambda: dl.Completion(with_value(np.nan), mask()), ValueError, "target"),
    ("completion reduction", lambda: dl.Completion(A(), mask(), reduction="observed"), ValueError, "reduction"),
    # --- Regression ------------------------------------------------------------------------------
    ("X / Y columns", lambda: dl.Regression(A((D, 10)), A((3, 9))), ValueError, "Y"),
    ("X NaN", lambda: dl.Regression(with_value(np.nan, shape=(D, 10)), A((3, 10))), ValueError, "X"),
    ("Y inf", lambda: dl.Regression(A((D, 10)), with_value(np.inf, shape=(3, 10))), ValueError, "Y"),
    ("Y complex", lambda: dl.Regression(A((D, 10)), A((3, 10)) + 0j), TypeError, "Y"),
    ("X 1-D", lambda: dl.Regression(np.ones(10), A((3, 10))), ValueError, "X"),
    ("Y 1-D", lambda: dl.Regression(A((D, 10)), np.ones(10)), ValueError, "Y"),
    ("X empty", lambda: dl.Regression(np.ones((D, 0)), np.ones((3, 0))), ValueError, "X"),
    ("regression reduction", lambda: dl.Regression(A((D, 5)), A((3, 5)), reduction=""), ValueError, "reduction"),
    # --- optimizers ------------------------------------------------------------------------------
    ("GD lr 0", lambda: dl.GD(lr=0.0), ValueError, "lr"),
    ("GD lr negative", lambda: dl.GD(lr=-0.1), ValueError, "lr"),
    ("GD lr NaN", lambda: dl.GD(lr=np.nan), ValueError, "lr"),
    ("GD lr inf", lambda: dl.GD(lr=np.inf), ValueError, "lr"),
    ("GD lr str", lambda: dl.GD(lr="0.1"), TypeError, "lr"),
    ("GD lr None", lambda: dl.GD(lr=None), TypeError, "lr"),
    ("GD lr array", lambda: dl.GD(lr=np.array([0.1])), TypeError, "lr"),
    ("GD momentum 1", lambda: dl.GD(lr=0.1, momentum=1.0), ValueError, "momentum"),
    ("GD momentum > 1", lambda: dl.GD(lr=0.1, momentum=1.5), ValueError, "momentum"),
    ("GD momentum negative", lambda: dl.GD(lr=0.1, momentum=-0.1), ValueError, "momentum"),
    ("GD momentum NaN", lambda: dl.GD(lr=0.1, momentum=np.nan), ValueError, "momentum"),
    ("GD weight_decay negative", lambda: dl.GD(lr=0.1, weight_decay=-1e-3), ValueError, "weight_decay"),
    ("GD weight_decay inf", lambda: dl.GD(lr=0.1, weight_decay=np.inf), ValueError, "weight_decay"),
    ("GD nesterov str", lambda: dl.GD(lr=0.1, momentum=0.9, nesterov="yes"), TypeError, "nesterov"),
    ("Adam lr 0", lambda: dl.Adam(lr=0), ValueError, "lr"),
    ("Adam b1 1", lambda: dl.Adam(b1=1.0), ValueError, "b1"),
    ("Adam b2 negative", lambda: dl.Adam(b2=-0.5), ValueError, "b2"),
    ("Adam eps negative", lambda: dl.Adam(eps=-1e-8), ValueError, "eps"),
    ("Adam eps_root NaN", lambda: dl.Adam(eps_root=np.nan), ValueError, "eps_root"),
    ("Adam weight_decay negative", lambda: dl.Adam(weight_decay=-1.0), ValueError, "weight_decay"),
    ("RMSProp decay 1", lambda: dl.RMSProp(decay=1.0), ValueError, "decay"),
    ("RMSProp eps 0 and initial_scale 0", lambda: dl.RMSProp(eps=0.0), ValueError, "eps"),
    ("RMSProp initial_scale negative", lambda: dl.RMSProp(initial_scale=-1.0), ValueError, "initial_scale"),
    ("RMSProp momentum 1", lambda: dl.RMSProp(momentum=1.0), ValueError, "momentum"),
    ("RMSProp centered int", lambda: dl.RMSProp(centered=1), TypeError, "centered"),
    ("RMSProp lr inf", lambda: dl.RMSProp(lr=np.inf), ValueError, "lr"),
    # --- train() ---------------------------------------------------------------------------------
    ("network vs problem d_L", lambda: train(n=net(width=D), p=fact((D + 1, D))), ValueError, "problem"),
    ("network vs problem d_0", lambda: train(n=net(width=D), p=fact((D, D + 1))), ValueError, "problem"),
    ("network vs problem transposed",
     lambda: train(n=dl.DeepLinearNetwork(1, dims=[3, 5]), p=fact((3, 5))), ValueError, "problem"),
    ("network vs completion", lambda: train(n=net(width=D + 1), p=dl.Completion(A(), mask())),
     ValueError, "problem"),
    ("network vs regression X",
     lambda: train(n=net(width=D), p=dl.Regression(A((D + 1, 7)), A((D, 7)))), ValueError, "problem"),
    ("network vs regression Y",
     lambda: train(n=net(width=D), p=dl.Regression(A((D, 7)), A((D - 1, 7)))), ValueError, "problem"),
    ("steps negative", lambda: train(steps=-1), ValueError, "steps"),
    ("steps float", lambda: train(steps=10.0), TypeError, "steps"),
    ("steps None", lambda: train(steps=None), TypeError, "steps"),
    ("record_every 0", lambda: train(record_every=0), ValueError, "record_every"),
    ("record_every negative", lambda: train(record_every=-5), ValueError, "record_every"),
    ("tol negative", lambda: train(tol=-1e-9), ValueError, "tol"),
    ("tol NaN", lambda: train(tol=np.nan), ValueError, "tol"),
    ("tol inf", lambda: train(tol=np.inf), ValueError, "tol"),
    ("on_divergence unknown", lambda: train(on_divergence="ignore"), ValueError, "on_divergence"),
    ("on_divergence None", lambda: train(on_divergence=None), ValueError, "on_divergence"),
    ("optimizer a string", lambda: train(opt="sgd"), TypeError, "optimizer"),
    ("optimizer a dict", lambda: train(opt={"lr": 0.1}), TypeError, "optimizer"),
    ("optimizer the class", lambda: train(opt=dl.GD), TypeError, "optimizer"),
    ("optimizer duck-typed", lambda: train(opt=NotAnOptimizer()), TypeError, "optimizer"),
    ("net an array", lambda: dl.train(A(), fact(), dl.GD(lr=0.1), 1), TypeError, "net"),
    ("net a core network", lambda: dl.train(net()._net, fact(), dl.GD(lr=0.1), 1), TypeError, "net"),
    ("problem an array", lambda: dl.train(net(), A(), dl.GD(lr=0.1), 1), TypeError, "problem"),
    ("progress str", lambda: train(progress="no"), TypeError, "progress"),
    ("callback not callable", lambda: train(callback=3), TypeError, "callback"),
    ("callback_every 0", lambda: train(callback=lambda s, n: None, callback_every=0), ValueError, "callback_every"),
    # --- loss_and_gradients ----------------------------------------------------------------------
    ("loss_and_gradients weight_decay", lambda: dl.loss_and_gradients(net(), fact(), -1.0),
     ValueError, "weight_decay"),
    ("loss_and_gradients weight_decay NaN", lambda: dl.loss_and_gradients(net(), fact(), np.nan),
     ValueError, "weight_decay"),
    ("loss_and_gradients shapes", lambda: dl.loss_and_gradients(net(), fact((D, 2))), ValueError, "problem"),
    # --- generators -----------------------------------------------------------------------------
    ("factorization rank > d", lambda: dl.problems.factorization(5, 6), ValueError, "rank"),
    ("factorization rank 0", lambda: dl.problems.factorization(5, 0), ValueError, "rank"),
    ("factorization d 0", lambda: dl.problems.factorization(0, 1), ValueError, "d"),
    ("factorization d float", lambda: dl.problems.factorization(5.0, 1), TypeError, "d"),
    ("factorization seed negative", lambda: dl.problems.factorization(5, 2, seed=-1), ValueError, "seed"),
    ("factorization reduction", lambda: dl.problems.factorization(5, 2, reduction="none"), ValueError, "reduction"),
    ("completion rank > d", lambda: dl.problems.completion(5, 6, 0.5), ValueError, "rank"),
    ("completion observed 0", lambda: dl.problems.completion(5, 2, 0.0), ValueError, "observed"),
    ("completion observed > 1", lambda: dl.problems.completion(5, 2, 1.01), ValueError, "observed"),
    ("completion observed negative", lambda: dl.problems.completion(5, 2, -0.2), ValueError, "observed"),
    ("completion observed NaN", lambda: dl.problems.completion(5, 2, np.nan), ValueError, "observed"),
    ("completion observed str", lambda: dl.problems.completion(5, 2, "20%"), TypeError, "observed"),
    ("completion seed negative", lambda: dl.problems.completion(5, 2, 0.5, seed=-3), ValueError, "seed"),
    # --- settings ------------------------------------------------------------------------------
    ("set_num_threads 0", lambda: dl.set_num_threads(0), ValueError, "threads"),
    ("set_num_threads float", lambda: dl.set_num_threads(2.0), TypeError, "threads"),
]


def test_table_is_large_and_unique():
    assert len(BAD_INPUTS) >= 40
    names = [b[0] for b in BAD_INPUTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("desc,call,exc,name", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input(desc, call, exc, name):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc  # not a subclass such as a NumPy or pybind11 error
    msg = str(info.value)
    assert msg.startswith(f"{name}:"), f"{desc}: message {msg!r} does not start with {name!r}:"


# -- layout: any layout accepted and converted to C order, never misread -------------------------

ARRAY_ARGS = {
    "target": lambda a: dl.Factorization(a),
    "mask": lambda a: dl.Completion(np.ones(a.shape), (a > 0).astype(np.float64)),  # keeps the layout
    "X": lambda a: dl.Regression(a, np.ones((2, a.shape[1]))),
    "Y": lambda a: dl.Regression(np.ones((2, a.shape[1])), a),
    "weights[0]": lambda a: dl.DeepLinearNetwork.from_weights([a]),
}


@pytest.mark.parametrize("arg", list(ARRAY_ARGS))
@pytest.mark.parametrize("shape", [(3, 5), (4, 4), (5, 1)])
def test_fortran_order_accepted_and_read_correctly(arg, shape):
    """Any layout is converted to C order (issue 14): the values read are the array's, not its
    buffer reinterpreted."""
    c = A(shape, seed=3)
    a = ARRAY_ARGS[arg](np.asfortranarray(c))
    b = ARRAY_ARGS[arg](c)
    for name in ("target", "mask", "X", "Y"):
        if hasattr(a, name):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    if hasattr(a, "weights"):
        np.testing.assert_array_equal(a.weights[0], c)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ascontiguousarray_of_fortran_input_is_read_correctly(dtype):
    c = A((3, 5), dtype=dtype, seed=4)
    f = np.asfortranarray(c)
    fixed = np.ascontiguousarray(f)
    p = dl.Factorization(fixed)
    np.testing.assert_array_equal(p.target, c)
    n = dl.DeepLinearNetwork.from_weights([fixed])
    np.testing.assert_array_equal(n.weights[0], c)
    # loss at a network whose end-to-end map equals the target: zero (not transposed / scrambled)
    train, _, _ = dl.loss_and_gradients(n, p)
    assert train == 0.0


def test_transposed_square_input_is_read_not_misread():
    """A square ``a.T`` has the right shape: reading its buffer row-major would silently give
    ``a`` instead of ``a.T``.  It is converted, so the values are ``a.T``'s."""
    a = A((D, D))
    np.testing.assert_array_equal(dl.Factorization(a.T).target, a.T)
    np.testing.assert_array_equal(dl.DeepLinearNetwork.from_weights([a.T]).weights[0], a.T)


def test_c_contiguous_views_are_accepted():
    """Contiguous slices (row blocks, single rows) are fine and read exactly."""
    big = A((6, D))
    p = dl.Factorization(big[2:5])
    np.testing.assert_array_equal(p.target, big[2:5])
    p = dl.Factorization(big[3:4])
    np.testing.assert_array_equal(p.target, big[3:4])
    n = dl.DeepLinearNetwork(1, dims=[D, 1])
    loss, _, _ = dl.loss_and_gradients(n, p)
    assert np.isclose(loss, 0.5 * np.mean((n.end_to_end() - big[3:4]) ** 2))


# -- conversions that are documented (and must not raise) --------------------------------------

def test_documented_conversions():
    # bool / integer masks, as arrays or nested lists
    for m in (mask() > 0, mask().astype(np.int8), mask().astype(np.uint8), (mask() > 0).tolist(),
              mask().astype(np.float32)):
        p = dl.Completion(A(), m)
        assert p.mask.dtype == np.float64
        np.testing.assert_array_equal(p.mask, mask())
    # float lists
    np.testing.assert_array_equal(dl.Factorization([[1.0, 2.0], [3.0, 4.0]]).target, [[1, 2], [3, 4]])
    # float32 problems with float64 networks (and the reverse) train
    for pdt, ndt in ((np.float32, np.float64), (np.float64, np.float32)):
        res = dl.train(net(dtype=ndt), dl.Factorization(A(dtype=pdt)), dl.GD(lr=0.01), 2, progress=False)
        assert res.status == "max_steps"
    # NumPy scalars as numbers
    dl.GD(lr=np.float32(0.1), momentum=np.float64(0.5))
    dl.DeepLinearNetwork(np.int64(2), np.int32(3), seed=np.uint64(2**64 - 1))
    train(steps=np.int64(2), record_every=np.int16(1), tol=np.float32(0.0))


def test_validation_happens_before_training():
    """A bad argument leaves the network untouched."""
    n = net()
    before = n.weights
    with pytest.raises(ValueError):
        dl.train(n, fact(), dl.GD(lr=0.5), 10, record_every=0, progress=False)
    with pytest.raises(ValueError):
        dl.train(n, fact(), dl.GD(lr=0.5), 10, on_divergence="never", progress=False)
    for a, b in zip(n.weights, before):
        np.testing.assert_array_equal(a, b)


# -- the compiled core's own checks (second line) ---------------------------------------------------

def core_net(dtype=np.float64, *shapes):
    cls = _core.Network64 if dtype == np.float64 else _core.Network32
    return cls([A(s, dtype=dtype) for s in (shapes or [(D, D), (D, D)])])


def cfg(**kw):
    c = _core.OptimizerConfig()
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def trainer(kind="factorization", a=None, b=None, c=1.0, config=None, record_every=1,
            network=None):
    return _core.Trainer64(core_net() if network is None else network, kind,
                           A() if a is None else a, b, c, cfg() if config is None else config,
                           record_every, -1.0, 10)


CORE_BAD_INPUTS = [
    ("Network64 chain mismatch", lambda: _core.Network64([A((3, 4)), A((5, 2))]), ValueError, "weights"),
    ("Network32 chain mismatch",
     lambda: _core.Network32([A((3, 4), np.float32), A((5, 4), np.float32)]), ValueError, "weights"),
    ("Network64 no layers", lambda: _core.Network64([]), ValueError, "weights"),
    ("Network64 empty layer", lambda: _core.Network64([np.ones((0, 3))]), ValueError, "weights"),
    ("init dims with 0", lambda: _core.Network64.init([3, 0, 3], "orthogonal", 1.0, 0), ValueError, "dims"),
    ("init one size", lambda: _core.Network64.init([3], "orthogonal", 1.0, 0), ValueError, "dims"),
    ("init unknown kind", lambda: _core.Network64.init([3, 3], "he", 1.0, 0), ValueError, "init"),
    ("init scale NaN", lambda: _core.Network32.init([3, 3], "gaussian", np.nan, 0), ValueError, "init_scale"),
    ("set_weight shape", lambda: core_net().set_weight(0, A((D, D + 1))), ValueError, "weight"),
    ("Trainer target rows", lambda: trainer(a=A((D + 1, D))), ValueError, "problem"),
    ("Trainer target cols", lambda: trainer(a=A((D, D + 1))), ValueError, "problem"),
    ("Trainer target NaN", lambda: trainer(a=with_value(np.nan)), ValueError, "target"),
    ("Trainer target strided", lambda: trainer(a=strided()), ValueError, "target"),
    ("Trainer target Fortran", lambda: trainer(a=np.asfortranarray(A())), ValueError, "target"),
    ("Trainer target 1-D", lambda: trainer(a=np.ones(D)), ValueError, "target"),
    ("Trainer target float32", lambda: trainer(a=A(dtype=np.float32)), TypeError, "target"),
    ("Trainer target list", lambda: trainer(a=A().tolist()), TypeError, "target"),
    ("Trainer mask 0.5", lambda: trainer("completion", b=mask() * 0.5), ValueError, "mask"),
    ("Trainer mask shape", lambda: trainer("completion", b=mask((D, D + 1))), ValueError, "mask"),
    ("Trainer mask missing", lambda: trainer("completion", b=None), TypeError, "mask"),
    ("Trainer X/Y columns", lambda: trainer("regression", a=A((D, 6)), b=A((D, 5))), ValueError, "Y"),
    ("Trainer X NaN", lambda: trainer("regression", a=with_value(np.nan, shape=(D, 6)), b=A((D, 6))),
     ValueError, "X"),
    ("Trainer unknown kind", lambda: trainer("pca"), ValueError, "problem"),
    ("Trainer c zero", lambda: trainer(c=0.0), ValueError, "c"),
    ("Trainer c NaN", lambda: trainer(c=np.nan), ValueError, "c"),
    ("Trainer record_every 0", lambda: trainer(record_every=0), ValueError, "record_every"),
    ("Trainer lr negative", lambda: trainer(config=cfg(lr=-1.0)), ValueError, "lr"),
    ("Trainer lr NaN", lambda: trainer(config=cfg(lr=float("nan"))), ValueError, "lr"),
    ("Trainer momentum 1", lambda: trainer(config=cfg(momentum=1.0)), ValueError, "momentum"),
    ("Trainer weight_decay negative", lambda: trainer(config=cfg(weight_decay=-1.0)), ValueError, "weight_decay"),
    ("Trainer RMSProp eps 0",
     lambda: trainer(config=cfg(kind=_core.OptKind.RMSProp, eps=0.0, initial_scale=0.0)), ValueError, "eps"),
    ("loss_and_gradients64 shape",
     lambda: _core.loss_and_gradients64(core_net(), "factorization", A((D, 2)), None, 1.0, 0.0),
     ValueError, "problem"),
    ("loss_and_gradients64 weight_decay",
     lambda: _core.loss_and_gradients64(core_net(), "factorization", A(), None, 1.0, -1.0),
     ValueError, "weight_decay"),
    ("loss_and_gradients32 dtype",
     lambda: _core.loss_and_gradients32(core_net(np.float32), "factorization", A(), None, 1.0, 0.0),
     TypeError, "target"),
    ("matmul64 inner", lambda: _core.matmul64(A((2, 3)), A((4, 2)), np.empty((2, 2))), ValueError, "b"),
    ("matmul64 out", lambda: _core.matmul64(A((2, 3)), A((3, 2)), np.empty((2, 3))), ValueError, "out"),
    ("core set_num_threads 0", lambda: _core.set_num_threads(0), ValueError, "threads"),
]


@pytest.mark.parametrize("desc,call,exc,name", CORE_BAD_INPUTS, ids=[b[0] for b in CORE_BAD_INPUTS])
def test_core_rejects_bad_input(desc, call, exc, name):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"{name}:"), f"{desc}: message {msg!r} does not start with {name!r}:"


def test_core_network_copies_fortran_input_correctly():
    """The core's Network constructor copies (converting any layout), so it never misreads."""
    c = A((3, 5))
    n = _core.Network64([np.asfortranarray(c)])
    np.testing.assert_array_equal(n.weight(0), c)
    n = _core.Network64([c[:, ::1].T.copy(order="F").T])
    np.testing.assert_array_equal(n.weight(0), c)


def test_core_network_weight_index():
    with pytest.raises(IndexError):
        core_net().weight(2)
