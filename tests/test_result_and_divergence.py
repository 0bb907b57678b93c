"""Results (save / load), divergence handling, callbacks, short runs and the problem generators."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

import deeplinear as dl


def _strict_json(text: str):
    """json.loads refusing NaN / Infinity (not JSON)."""
    def bad(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=bad)


def _run(kind="factorization", steps=20, record_every=1, seed=0, lr=0.2, **kw):
    if kind == "factorization":
        prob = dl.problems.factorization(6, 2, seed=seed)
    else:
        prob = dl.problems.completion(6, 2, 0.6, seed=seed)
    net = dl.DeepLinearNetwork(3, 6, init_scale=0.5, seed=seed)
    return dl.train(net, prob, dl.GD(lr=lr, momentum=0.5), steps=steps, record_every=record_every,
                    progress=False, **kw)


# -- Result: save / load -----------------------------------------------------------------------

def _assert_same_result(a: dl.Result, b: dl.Result):
    for name in ("steps", "train_loss"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    if a.test_loss is None:
        assert b.test_loss is None
    else:
        assert a.test_loss.dtype == b.test_loss.dtype
        np.testing.assert_array_equal(a.test_loss, b.test_loss)
    assert (a.status, a.n_steps, a.elapsed) == (b.status, b.n_steps, b.elapsed)
    assert a.meta == b.meta


@pytest.mark.parametrize("kind", ["factorization", "completion"])
@pytest.mark.parametrize("record_every", [1, 3])
def test_save_load_round_trip(tmp_path, kind, record_every):
    res = _run(kind, steps=10, record_every=record_every)
    assert res.steps.dtype == np.int64 and res.train_loss.dtype == np.float64
    assert (res.test_loss is None) == (kind == "factorization")
    path = tmp_path / "run.npz"
    res.save(path)
    back = dl.Result.load(path)
    _assert_same_result(res, back)
    assert back.meta["network"]["dims"] == [6, 6, 6, 6]
    assert back.meta["optimizer"] == {"name": "gd", "lr": 0.2, "weight_decay": 0.0, "momentum": 0.5,
                                      "nesterov": False}
    assert back.meta["problem"]["kind"] == kind
    assert back.meta["steps"] == 10 and back.meta["record_every"] == record_every
    # atomic write: no temporary file left behind
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]


def test_save_load_exact_bits_and_str_path(tmp_path):
    """Values that print the same but differ in the last bit survive the round trip."""
    x = 0.1 + 0.2
    res = dl.Result(steps=np.array([0, 5, 7], dtype=np.int64),
                    train_loss=np.array([x, np.nextafter(x, 1.0), 5e-324]),
                    test_loss=np.array([1.0, 2.0, 3.0]), status="converged", n_steps=7,
                    elapsed=1.25, meta={"a": [1, 2], "b": {"c": "d"}, "e": None, "f": 1.5})
    path = str(tmp_path / "r.npz")
    res.save(path)
    _assert_same_result(res, dl.Result.load(path))


def test_save_overwrites(tmp_path):
    path = tmp_path / "r.npz"
    _run(steps=3).save(path)
    res = _run(steps=7)
    res.save(path)
    assert dl.Result.load(path).n_steps == 7


def test_save_load_diverged_and_empty_history(tmp_path):
    prob = dl.problems.factorization(4, 1, seed=0)
    net = dl.DeepLinearNetwork(3, 4, init_scale=1e120, seed=0)  # loss overflows at step 0
    with pytest.warns(dl.DivergenceWarning):
        res = dl.train(net, prob, dl.GD(lr=0.1), steps=10, progress=False)
    assert res.status == "diverged" and res.n_steps == 0 and len(res.train_loss) == 0
    assert math.isnan(res.final_loss)
    res.save(tmp_path / "r.npz")
    _assert_same_result(res, dl.Result.load(tmp_path / "r.npz"))
    res.save_json(tmp_path / "r.json")
    data = _strict_json((tmp_path / "r.json").read_text())
    assert data["status"] == "diverged" and data["train_loss"] == [] and data["final_train_loss"] is None


def test_save_load_from_weights_network_meta(tmp_path):
    """A network made from weights has init_scale NaN in its metadata."""
    net = dl.DeepLinearNetwork.from_weights(dl.DeepLinearNetwork(2, 4, seed=1).weights)
    res = dl.train(net, dl.problems.factorization(4, 1), dl.GD(lr=0.1), steps=3, progress=False)
    res.save(tmp_path / "r.npz")
    back = dl.Result.load(tmp_path / "r.npz")
    assert math.isnan(back.meta["network"]["init_scale"]) and back.meta["network"]["init"] == "given"
    res.save_json(tmp_path / "r.json")
    data = _strict_json((tmp_path / "r.json").read_text())
    assert data["meta"]["network"]["init_scale"] is None


@pytest.mark.parametrize("kind", ["factorization", "completion"])
def test_save_json(tmp_path, kind):
    res = _run(kind, steps=6, record_every=2)
    path = tmp_path / "r.json"
    res.save_json(path)
    data = _strict_json(path.read_text())
    assert data["status"] == res.status == "max_steps"
    assert data["n_steps"] == 6
    assert data["steps"] == [0, 2, 4, 6]
    assert data["train_loss"] == res.train_loss.tolist()  # repr round-trips floats exactly
    assert data["final_train_loss"] == res.final_loss
    assert data["meta"] == json.loads(json.dumps(res.meta))
    if kind == "completion":
        assert data["test_loss"] == res.test_loss.tolist()
        assert data["final_test_loss"] == res.test_loss[-1]
    else:
        assert "test_loss" not in data and "final_test_loss" not in data


def test_summary_and_repr():
    res = _run(steps=4)
    s = res.summary()
    json.dumps(s)
    assert s["status"] == "max_steps" and s["n_steps"] == 4 and s["final_train_loss"] == res.final_loss
    assert repr(res).startswith("Result(status='max_steps', n_steps=4, final_loss=")
    assert "recorded=5" in repr(res)


# -- short runs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["factorization", "completion"])
def test_zero_steps_records_one_loss(kind):
    res = _run(kind, steps=0)
    assert res.status == "max_steps" and res.n_steps == 0
    np.testing.assert_array_equal(res.steps, [0])
    assert len(res.train_loss) == 1 and np.isfinite(res.train_loss[0])
    if kind == "completion":
        assert len(res.test_loss) == 1
    # the value is the loss at the initial weights
    prob = (dl.problems.factorization(6, 2, seed=0) if kind == "factorization"
            else dl.problems.completion(6, 2, 0.6, seed=0))
    train, test, _ = dl.loss_and_gradients(dl.DeepLinearNetwork(3, 6, init_scale=0.5, seed=0), prob)
    assert res.train_loss[0] == train


def test_zero_steps_does_not_change_the_network():
    net = dl.DeepLinearNetwork(2, 5, seed=4)
    before = net.weights
    dl.train(net, dl.problems.factorization(5, 2), dl.GD(lr=1.0), steps=0, progress=False)
    for a, b in zip(net.weights, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("steps,every,expected", [(1, 1, [0, 1]), (7, 3, [0, 3, 6, 7]),
                                                  (6, 3, [0, 3, 6]), (2, 10, [0, 2])])
def test_recorded_steps(steps, every, expected):
    res = _run(steps=steps, record_every=every)
    np.testing.assert_array_equal(res.steps, expected)
    full = _run(steps=steps)
    np.testing.assert_array_equal(res.train_loss, full.train_loss[expected])


# -- divergence ------------------------------------------------------------------------------------

DIV_LR = 20.0


def _div_setup(dtype=np.float64, kind="factorization"):
    prob = (dl.problems.factorization(8, 2, seed=0) if kind == "factorization"
            else dl.problems.completion(8, 2, 0.5, seed=0))
    return dl.DeepLinearNetwork(3, 8, init_scale=1.0, seed=0, dtype=dtype), prob


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["factorization", "completion"])
def test_divergence_warns_and_keeps_history(dtype, kind):
    net, prob = _div_setup(dtype, kind)
    with pytest.warns(dl.DivergenceWarning, match="diverged at step"):
        res = dl.train(net, prob, dl.GD(lr=DIV_LR), steps=500, progress=False)
    assert res.status == "diverged"
    n = res.n_steps
    assert 1 <= n < 500
    # the losses at steps 0 .. n-1 are kept; step n is the first non-finite one
    np.testing.assert_array_equal(res.steps, np.arange(n))
    assert len(res.train_loss) == n and np.all(np.isfinite(res.train_loss))
    if kind == "completion":
        assert len(res.test_loss) == n and np.all(np.isfinite(res.test_loss))
    assert res.train_loss[-1] > 1e3 * res.train_loss[0]
    # same settings, stopped just before: identical history, status max_steps
    net2, prob2 = _div_setup(dtype, kind)
    ref = dl.train(net2, prob2, dl.GD(lr=DIV_LR), steps=n - 1, progress=False)
    assert ref.status == "max_steps"
    np.testing.assert_allclose(res.train_loss, ref.train_loss, rtol=1e-12, atol=0)
    # and one step further diverges at the same step
    net3, prob3 = _div_setup(dtype, kind)
    with pytest.warns(dl.DivergenceWarning, match=f"at step {n}"):
        again = dl.train(net3, prob3, dl.GD(lr=DIV_LR), steps=n, progress=False)
    assert again.status == "diverged" and again.n_steps == n


def test_divergence_with_record_every():
    net, prob = _div_setup()
    with pytest.warns(dl.DivergenceWarning):
        full = dl.train(net, prob, dl.GD(lr=DIV_LR), steps=500, progress=False)
    net, prob = _div_setup()
    with pytest.warns(dl.DivergenceWarning):
        res = dl.train(net, prob, dl.GD(lr=DIV_LR), steps=500, record_every=2, progress=False)
    assert res.n_steps == full.n_steps
    np.testing.assert_array_equal(res.steps, np.arange(0, full.n_steps, 2))
    np.testing.assert_allclose(res.train_loss, full.train_loss[::2], rtol=1e-12)


def test_divergence_with_callback_and_tol():
    net, prob = _div_setup()
    seen = []
    with pytest.warns(dl.DivergenceWarning):
        res = dl.train(net, prob, dl.GD(lr=DIV_LR), steps=500, tol=1e-12, progress=False,
                       callback=lambda s, n: seen.append(s), callback_every=1)
    assert res.status == "diverged"
    assert seen == list(range(res.n_steps + 1))  # no callback after the divergence


def test_divergence_raise():
    net, prob = _div_setup()
    with pytest.raises(dl.DivergenceError, match="diverged"):
        dl.train(net, prob, dl.GD(lr=DIV_LR), steps=500, progress=False, on_divergence="raise")
    assert issubclass(dl.DivergenceError, FloatingPointError)
    assert issubclass(dl.DivergenceWarning, RuntimeWarning)


def test_no_divergence_no_warning():
    net, prob = _div_setup()
    res = dl.train(net, prob, dl.GD(lr=0.05), steps=50, progress=False, on_divergence="raise")
    assert res.status == "max_steps"


# -- callbacks -------------------------------------------------------------------------------------

def _cb_setup():
    return dl.DeepLinearNetwork(3, 5, init_scale=0.7, seed=2), dl.problems.factorization(5, 2, seed=1)


def _trained_weights(steps):
    net, prob = _cb_setup()
    dl.train(net, prob, dl.GD(lr=0.3, momentum=0.0), steps=steps, progress=False)
    return net.weights


@pytest.mark.parametrize("steps,every,expected", [
    (10, 3, [0, 3, 6, 9, 10]),
    (9, 3, [0, 3, 6, 9]),
    (5, None, [0, 5]),
    (4, 1, [0, 1, 2, 3, 4]),
    (3, 7, [0, 3]),
    (0, None, [0]),
    (0, 2, [0]),
])
def test_callback_steps_and_weights(steps, every, expected):
    net, prob = _cb_setup()
    calls = []

    def cb(step, n):
        assert n is net
        calls.append((step, n.weights))

    res = dl.train(net, prob, dl.GD(lr=0.3), steps=steps, progress=False, callback=cb,
                   callback_every=every)
    assert [s for s, _ in calls] == expected
    assert res.n_steps == steps
    for step, ws in calls:
        for a, b in zip(ws, _trained_weights(step)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


def test_callback_on_convergence():
    net, prob = _cb_setup()
    full = dl.train(net.copy(), prob, dl.GD(lr=0.3), steps=200, progress=False)
    tol = float(full.train_loss[37])  # first step whose loss is <= tol
    assert np.all(full.train_loss[:37] > tol)
    calls = []
    res = dl.train(net, prob, dl.GD(lr=0.3), steps=200, tol=tol, progress=False,
                   callback=lambda s, n: calls.append(s), callback_every=10)
    assert res.status == "converged" and res.n_steps == 37
    assert calls == [0, 10, 20, 30, 37]
    # converged at step 0: one call only
    calls = []
    net, prob = _cb_setup()
    res = dl.train(net, prob, dl.GD(lr=0.3), steps=20, tol=1e9, progress=False,
                   callback=lambda s, n: calls.append(s))
    assert res.status == "converged" and res.n_steps == 0 and calls == [0]


def test_callback_exception_propagates():
    net, prob = _cb_setup()

    def cb(step, n):
        if step == 2:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        dl.train(net, prob, dl.GD(lr=0.3), steps=10, progress=False, callback=cb, callback_every=1)


# -- problem generators ------------------------------------------------------------------------------

@pytest.mark.parametrize("d,rank,seed", [(10, 1, 0), (30, 4, 7), (25, 25, 3)])
def test_factorization_generator(d, rank, seed):
    p = dl.problems.factorization(d, rank, seed)
    q = dl.problems.factorization(d, rank, seed)
    assert isinstance(p, dl.Factorization) and p.reduction == "mean"
    assert p.target.shape == (d, d) and p.target.dtype == np.float64 and p.target.flags.c_contiguous
    np.testing.assert_array_equal(p.target, q.target)
    assert not np.array_equal(p.target, dl.problems.factorization(d, rank, seed + 1).target)
    assert np.linalg.matrix_rank(p.target) == rank
    # documented draw order: A (d x r), then B (d x r), Phi = A B^T / sqrt(r)
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, rank))
    B = rng.standard_normal((d, rank))
    np.testing.assert_array_equal(p.target, (A @ B.T) / np.sqrt(rank))
    assert dl.problems.factorization(d, rank, seed, reduction="sum").reduction == "sum"


def test_factorization_default_seed():
    np.testing.assert_array_equal(dl.problems.factorization(8, 2).target,
                                  dl.problems.factorization(8, 2, 0).target)


@pytest.mark.parametrize("observed", [0.05, 0.2, 0.5, 1.0])
def test_completion_generator(observed):
    d, rank, seed = 200, 3, 5
    p = dl.problems.completion(d, rank, observed, seed)
    q = dl.problems.completion(d, rank, observed, seed)
    assert isinstance(p, dl.Completion) and p.reduction == "mean"
    np.testing.assert_array_equal(p.target, q.target)
    np.testing.assert_array_equal(p.mask, q.mask)
    assert p.mask.shape == (d, d) and p.mask.dtype == np.float64
    assert set(np.unique(p.mask)) <= {0.0, 1.0}
    assert np.linalg.matrix_rank(p.target) == rank
    # same target as factorization with the same seed
    np.testing.assert_array_equal(p.target, dl.problems.factorization(d, rank, seed).target)
    # mask fraction ~ observed (binomial: sd = sqrt(p(1-p)/d^2) <= 0.0025)
    assert abs(p.observed_fraction - observed) < 0.01
    assert p.observed_fraction == p.mask.mean()
    # documented draw order: A, B, then a d x d uniform matrix U, observed iff U < observed
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, rank))
    B = rng.standard_normal((d, rank))
    U = rng.random((d, d))
    np.testing.assert_array_equal(p.target, (A @ B.T) / np.sqrt(rank))
    np.testing.assert_array_equal(p.mask, (U < observed).astype(np.float64))
    other = dl.problems.completion(d, rank, observed, seed + 1)
    assert not np.array_equal(p.target, other.target)
    if observed < 1:
        assert not np.array_equal(p.mask, other.mask)


def test_completion_masks_are_nested_in_observed():
    """Same seed, same uniforms: a larger observed fraction observes a superset of entries."""
    lo = dl.problems.completion(50, 2, 0.2, seed=1).mask
    hi = dl.problems.completion(50, 2, 0.6, seed=1).mask
    assert np.all(hi >= lo) and hi.sum() > lo.sum()


def test_generated_problems_train():
    p = dl.problems.completion(12, 2, 0.7, seed=0, reduction="sum")
    net = dl.DeepLinearNetwork(2, 12, init_scale=0.3, seed=0)
    res = dl.train(net, p, dl.GD(lr=0.02), steps=30, progress=False)
    assert res.status == "max_steps" and res.train_loss[-1] < res.train_loss[0]
    assert res.meta["problem"] == {"kind": "completion", "reduction": "sum", "shape": [12, 12]}


@pytest.mark.parametrize("kind", ["factorization", "completion"])
@pytest.mark.parametrize("record_every", [1, 7, 1000])
def test_divergence_step_is_the_first_non_finite_weights_or_loss(kind, record_every):
    """Without weight decay the core checks the weights explicitly only at the end of a run; a
    non-finite weight must still stop the run at the first step where the weights (or the loss)
    stop being finite, as in a NumPy run of the same steps that checks the weights every step."""
    import warnings

    from oracle import gradients, losses, problem_from_dl

    net, prob = _div_setup(np.float64, kind)
    ws = [w.astype(np.float64) for w in net.weights]
    p = problem_from_dl(prob)
    first_bad = None
    with np.errstate(all="ignore"):
        for k in range(500):
            train, _ = losses(ws, p)
            if not (np.isfinite(train) and all(np.all(np.isfinite(w)) for w in ws)):
                first_bad = k
                break
            ws = [w - DIV_LR * g for w, g in zip(ws, gradients(ws, p))]
    assert first_bad is not None and first_bad >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dl.DivergenceWarning)
        res = dl.train(net, prob, dl.GD(lr=DIV_LR), steps=500, record_every=record_every, progress=False)
    assert res.status == "diverged"
    assert res.n_steps == first_bad
