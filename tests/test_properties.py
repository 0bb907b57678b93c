"""Property tests (Hypothesis) of the public API over random shapes and settings.

* ``dl.train`` on random networks (depth 1–4, layer sizes 1–6, either init, any scale, either
  dtype), problems (factorization, completion, regression; sum or mean) and optimizers (GD with
  momentum / Nesterov, Adam, RMSProp plain / centered / with momentum; weight decay) for 0–20
  steps either runs, with a consistent result, or refuses its arguments with ValueError or
  TypeError; DivergenceWarning is the only warning, and only for a diverged run.
* Invalid arguments drawn at random are refused with ValueError / TypeError whose message
  starts with the argument's name.
* ``dl.loss_and_gradients`` matches central finite differences of its own loss.

Examples per property are scaled by the environment variable ``DEEPLINEAR_HYPOTHESIS_SCALE``
(default 1; the sanitizer stage, ``.ci/sanitize``, runs fewer).  With ``CI`` set the examples are
derandomized, so that a CI run is reproducible.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import deeplinear as dl

settings.register_profile(
    "deeplinear", deadline=None, print_blob=True, derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("deeplinear")

_SCALE = float(os.environ.get("DEEPLINEAR_HYPOTHESIS_SCALE", "1"))


def examples(n: int) -> int:
    return max(5, int(n * _SCALE))


STATUSES = {"max_steps", "converged", "diverged"}
NAN, INF = float("nan"), float("inf")

# -- strategies -----------------------------------------------------------------------------------

depths = st.integers(1, 4)
sizes = st.integers(1, 6)
seeds = st.integers(0, 2**32 - 1)
reductions = st.sampled_from(["sum", "mean"])
dtypes = st.sampled_from([np.float64, np.float32])


@st.composite
def networks(draw):
    depth = draw(depths)
    dims = draw(st.lists(sizes, min_size=depth + 1, max_size=depth + 1))
    init = draw(st.sampled_from(["orthogonal", "gaussian"]))
    scale = draw(st.one_of(st.sampled_from([0.0, 1e-3, 0.1, 1.0, 3.0, -1.0]),
                           st.floats(-10, 10, allow_nan=False)))
    seed = draw(seeds)
    dtype = draw(dtypes)
    return dl.DeepLinearNetwork(depth, dims=dims, init=init, init_scale=scale, seed=seed, dtype=dtype)


@st.composite
def problems(draw, d_out, d_in):
    kind = draw(st.sampled_from(["factorization", "completion", "regression"]))
    reduction = draw(reductions)
    rng = np.random.default_rng(draw(seeds))
    magnitude = draw(st.sampled_from([0.0, 1e-3, 1.0, 10.0, 1e3]))
    if kind == "regression":
        n = draw(st.integers(1, 6))
        X = rng.standard_normal((d_in, n)) * draw(st.sampled_from([1e-3, 1.0, 10.0]))
        Y = rng.standard_normal((d_out, n)) * magnitude
        return dl.Regression(X, Y, reduction=reduction)
    target = rng.standard_normal((d_out, d_in)) * magnitude
    if kind == "factorization":
        return dl.Factorization(target, reduction=reduction)
    observed = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    mask = rng.random((d_out, d_in)) < observed
    return dl.Completion(target, mask, reduction=reduction)


learning_rates = st.one_of(st.sampled_from([1e-3, 1e-2, 0.1, 0.5, 1.0, 10.0, 1e3, 1e8]), st.floats(1e-6, 2.0))
weight_decays = st.one_of(st.just(0.0), st.sampled_from([1e-3, 0.1, 1.0]), st.floats(0.0, 2.0))
momenta = st.one_of(st.just(0.0), st.sampled_from([0.5, 0.9, 0.99]), st.floats(0.0, 0.999))
betas = st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.999]), st.floats(0.0, 0.9999))
epsilons = st.one_of(st.sampled_from([0.0, 1e-12, 1e-8, 1e-3, 1.0]), st.floats(0.0, 1.0))

# Out-of-range values of each setting, one of which now and then replaces a valid one (the
# constructor must then refuse it; that it names it is the next properties' business).
BAD_SETTINGS = {
    "lr": [0.0, -0.1, NAN, INF], "weight_decay": [-1e-3, NAN, INF], "momentum": [1.0, 1.5, -0.1, NAN],
    "nesterov": [1, 0], "b1": [1.0, -0.5, NAN], "b2": [1.0, -0.5, NAN], "eps": [-1e-8, NAN, INF],
    "eps_root": [-1.0], "decay": [1.0, -0.5, NAN], "initial_scale": [-1.0, INF], "centered": [1, 0],
}


@st.composite
def optimizers(draw):
    """A factory of a random optimizer (calling it may raise, for an invalid setting)."""
    kind = draw(st.sampled_from([dl.GD, dl.Adam, dl.RMSProp]))
    kw = {"lr": draw(learning_rates), "weight_decay": draw(weight_decays)}
    if kind is dl.GD:
        kw.update(momentum=draw(momenta), nesterov=draw(st.booleans()))
    elif kind is dl.Adam:
        kw.update(b1=draw(betas), b2=draw(betas), eps=draw(epsilons),
                  eps_root=draw(st.sampled_from([0.0, 1e-8])))
    else:
        kw.update(decay=draw(betas), eps=draw(epsilons), initial_scale=draw(st.sampled_from([0.0, 0.1, 1.0])),
                  centered=draw(st.booleans()), momentum=draw(momenta), nesterov=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from(sorted(kw)))
        kw[key] = draw(st.sampled_from(BAD_SETTINGS[key]))
    return lambda: kind(**kw)


def expected_steps(n_steps: int, every: int, status: str) -> list[int]:
    """The steps a run records: multiples of ``record_every`` and the last step, except for a
    diverged run, whose last (non-finite) loss is not recorded."""
    if status == "diverged":
        return list(range(0, n_steps, every))
    return sorted(set(range(0, n_steps + 1, every)) | {n_steps})


# -- dl.train over random settings ----------------------------------------------------------------

@settings(max_examples=examples(100))
@given(data=st.data(), net=networks(), steps=st.integers(0, 20),
       record_every=st.one_of(st.just(1), st.just(1), st.integers(1, 5)),
       tol=st.one_of(st.none(), st.sampled_from([0.0, 1e-6, 1.0]), st.floats(0.0, 100.0)))
def test_train_runs_or_refuses(data, net, steps, record_every, tol):
    d_out, d_in = net.dims[-1], net.dims[0]
    problem = data.draw(problems(d_out, d_in))
    make_optimizer = data.draw(optimizers())
    try:
        optimizer = make_optimizer()
    except (ValueError, TypeError):
        event("optimizer refused")
        return  # an invalid setting, refused by the constructor (named: see the next property)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = dl.train(net, problem, optimizer, steps, tol=tol, record_every=record_every, progress=False)

    assert all(issubclass(w.category, dl.DivergenceWarning) for w in caught), \
        [f"{w.category.__name__}: {w.message}" for w in caught]
    assert (len(caught) > 0) == (res.status == "diverged")
    event(f"{res.status} ({type(problem).__name__}, {type(optimizer).__name__})")
    assert res.status in STATUSES
    assert 0 <= res.n_steps <= steps
    if res.status == "max_steps":
        assert res.n_steps == steps
    if res.status == "converged":
        assert tol is not None and res.train_loss[-1] <= tol
    assert res.steps.tolist() == expected_steps(res.n_steps, record_every, res.status)
    if record_every == 1 and res.status != "diverged":
        assert len(res.train_loss) == res.n_steps + 1
    assert len(res.train_loss) == len(res.steps)
    assert np.all(np.isfinite(res.train_loss)) and np.all(res.train_loss >= 0)
    if isinstance(problem, dl.Completion):
        assert res.test_loss is not None and len(res.test_loss) == len(res.steps)
        assert np.all(np.isfinite(res.test_loss)) and np.all(res.test_loss >= 0)
    else:
        assert res.test_loss is None
    if res.status != "diverged":
        assert all(np.all(np.isfinite(w)) for w in net.weights)
    # the network object is still usable after any run
    assert net.end_to_end().shape == (d_out, d_in)


@settings(max_examples=examples(60))
@given(data=st.data(), net=networks(), steps=st.integers(0, 20))
def test_diverging_runs_raise_on_request(data, net, steps):
    """``on_divergence="raise"``: DivergenceError exactly when the same run diverges with "warn"."""
    problem = data.draw(problems(net.dims[-1], net.dims[0]))
    lr = data.draw(st.sampled_from([0.1, 10.0, 1e3, 1e8]))
    opt = dl.GD(lr=lr)
    twin = dl.DeepLinearNetwork.from_weights(net.weights)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = dl.train(twin, problem, opt, steps, progress=False)
    if res.status == "diverged":
        with pytest.raises(dl.DivergenceError):
            dl.train(net, problem, opt, steps, progress=False, on_divergence="raise")
    else:
        again = dl.train(net, problem, opt, steps, progress=False, on_divergence="raise")
        np.testing.assert_array_equal(again.train_loss, res.train_loss)


# -- invalid arguments are refused by name --------------------------------------------------------

non_positive = st.one_of(st.sampled_from([0.0, -0.0, NAN, INF, -INF]), st.floats(max_value=0.0))
negative = st.one_of(st.sampled_from([-1e-300, NAN, INF, -INF]), st.floats(max_value=-1e-300))
outside_unit = st.one_of(st.sampled_from([1.0, NAN, INF, -INF]), st.floats(min_value=1.0),
                         st.floats(max_value=-1e-300))
not_a_number = st.sampled_from(["0.1", None, [0.1], 1j, True, False, b"1"])
not_an_int = st.sampled_from([1.0, 2.5, "3", None, True, [2], np.float64(3.0)])
non_positive_ints = st.integers(max_value=0)


def bad_real(bad_values):
    return st.one_of(bad_values.map(lambda v: (v, ValueError)), not_a_number.map(lambda v: (v, TypeError)))


def optimizer_cases():
    """(factory, keyword, (value, exception)) for every numeric optimizer setting."""
    cases = []
    for cls in (dl.GD, dl.Adam, dl.RMSProp):
        cases.append(st.tuples(st.just(cls), st.just("lr"), bad_real(non_positive)))
        cases.append(st.tuples(st.just(cls), st.just("weight_decay"), bad_real(negative)))
    for cls in (dl.GD, dl.RMSProp):
        cases.append(st.tuples(st.just(cls), st.just("momentum"), bad_real(outside_unit)))
        cases.append(st.tuples(st.just(cls), st.just("nesterov"),
                               st.sampled_from([1, 0, "yes", None, 1.0]).map(lambda v: (v, TypeError))))
    for key in ("b1", "b2"):
        cases.append(st.tuples(st.just(dl.Adam), st.just(key), bad_real(outside_unit)))
    for key in ("eps", "eps_root"):
        cases.append(st.tuples(st.just(dl.Adam), st.just(key), bad_real(negative)))
    cases.append(st.tuples(st.just(dl.RMSProp), st.just("decay"), bad_real(outside_unit)))
    cases.append(st.tuples(st.just(dl.RMSProp), st.just("eps"), bad_real(negative)))
    cases.append(st.tuples(st.just(dl.RMSProp), st.just("initial_scale"), bad_real(negative)))
    cases.append(st.tuples(st.just(dl.RMSProp), st.just("centered"),
                           st.sampled_from([1, 0, "no", None]).map(lambda v: (v, TypeError))))
    return st.one_of(*cases)


def assert_refused(call, exc, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert isinstance(info.value, exc), f"{type(info.value).__name__}: {info.value}"
    assert str(info.value).startswith(f"{name}:"), f"message {str(info.value)!r} does not name {name!r}"


@settings(max_examples=examples(100))
@given(case=optimizer_cases())
def test_bad_optimizer_settings_are_refused_by_name(case):
    cls, key, (value, exc) = case
    assert_refused(lambda: cls(**{key: value}), exc, key)


@st.composite
def bad_network_args(draw):
    """(kwargs of DeepLinearNetwork, exception, name of the bad argument)."""
    depth = draw(depths)
    dims = draw(st.lists(sizes, min_size=depth + 1, max_size=depth + 1))
    which = draw(st.sampled_from(["depth", "depth_type", "width", "width_type", "dims_entry",
                                  "dims_entry_type", "dims_length", "init_scale", "init_scale_type",
                                  "seed", "init"]))
    kw = {"depth": depth, "dims": dims}
    if which == "depth":
        kw["depth"] = draw(non_positive_ints)
        return kw, ValueError, "depth"
    if which == "depth_type":
        kw["depth"] = draw(not_an_int)
        return kw, TypeError, "depth"
    if which == "width":
        del kw["dims"]
        kw["width"] = draw(non_positive_ints)
        return kw, ValueError, "width"
    if which == "width_type":
        del kw["dims"]
        kw["width"] = draw(not_an_int.filter(lambda v: v is not None))
        return kw, TypeError, "width"
    if which == "dims_entry":
        i = draw(st.integers(0, depth))
        kw["dims"] = dims[:i] + [draw(non_positive_ints)] + dims[i + 1:]
        return kw, ValueError, "dims"
    if which == "dims_entry_type":
        i = draw(st.integers(0, depth))
        kw["dims"] = dims[:i] + [draw(not_an_int)] + dims[i + 1:]
        return kw, TypeError, "dims"
    if which == "dims_length":
        n = draw(st.integers(0, 8).filter(lambda n: n != depth + 1))
        kw["dims"] = (dims * 3)[:n]
        return kw, ValueError, "dims"
    if which == "init_scale":
        kw["init_scale"] = draw(st.sampled_from([NAN, INF, -INF]))
        return kw, ValueError, "init_scale"
    if which == "init_scale_type":
        kw["init_scale"] = draw(not_a_number)
        return kw, TypeError, "init_scale"
    if which == "seed":
        kw["seed"] = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64)))
        return kw, ValueError, "seed"
    kw["init"] = draw(st.one_of(st.text(max_size=12), st.none()).filter(
        lambda s: s not in ("orthogonal", "gaussian")))
    return kw, ValueError, "init"


@settings(max_examples=examples(100))
@given(case=bad_network_args())
def test_bad_network_arguments_are_refused_by_name(case):
    kw, exc, name = case
    depth = kw.pop("depth")
    assert_refused(lambda: dl.DeepLinearNetwork(depth, **kw), exc, name)


@st.composite
def bad_train_args(draw):
    """(kwargs for dl.train besides net, problem, optimizer; exception; name)."""
    which = draw(st.sampled_from(["steps", "steps_type", "record_every", "record_every_type", "tol",
                                  "tol_type", "on_divergence", "progress", "problem"]))
    kw = {"steps": draw(st.integers(0, 5))}
    if which == "steps":
        kw["steps"] = draw(st.integers(max_value=-1))
        return kw, ValueError, "steps"
    if which == "steps_type":
        kw["steps"] = draw(not_an_int)
        return kw, TypeError, "steps"
    if which == "record_every":
        kw["record_every"] = draw(non_positive_ints)
        return kw, ValueError, "record_every"
    if which == "record_every_type":
        kw["record_every"] = draw(not_an_int)
        return kw, TypeError, "record_every"
    if which == "tol":
        kw["tol"] = draw(negative)
        return kw, ValueError, "tol"
    if which == "tol_type":
        kw["tol"] = draw(not_a_number.filter(lambda v: v is not None))
        return kw, TypeError, "tol"
    if which == "on_divergence":
        kw["on_divergence"] = draw(st.one_of(st.text(max_size=8), st.none()).filter(
            lambda s: s not in ("warn", "raise")))
        return kw, ValueError, "on_divergence"
    if which == "progress":
        kw["progress"] = draw(st.sampled_from([1, 0, "yes", None]))
        return kw, TypeError, "progress"
    kw["problem_shape"] = draw(st.tuples(sizes, sizes))
    return kw, ValueError, "problem"


@settings(max_examples=examples(100))
@given(net=networks(), case=bad_train_args())
def test_bad_train_arguments_are_refused_by_name(net, case):
    kw, exc, name = case
    shape = kw.pop("problem_shape", None)
    d_out, d_in = net.dims[-1], net.dims[0]
    if shape is not None:
        assume(shape != (d_out, d_in))
        d_out, d_in = shape
    problem = dl.Factorization(np.ones((d_out, d_in)))
    kw.setdefault("progress", False)
    before = net.weights
    steps = kw.pop("steps")
    assert_refused(lambda: dl.train(net, problem, dl.GD(lr=0.01), steps, **kw), exc, name)
    for w, w0 in zip(net.weights, before):  # refused before any step
        np.testing.assert_array_equal(w, w0)


# -- gradients against finite differences ---------------------------------------------------------

@st.composite
def gradient_cases(draw):
    depth = draw(st.integers(1, 3))
    dims = draw(st.lists(st.integers(1, 4), min_size=depth + 1, max_size=depth + 1))
    rng = np.random.default_rng(draw(seeds))
    scale = draw(st.sampled_from([0.3, 0.7, 1.0, 1.3]))
    weights = [rng.standard_normal((dims[l + 1], dims[l])) * scale / math.sqrt(dims[l])
               for l in range(depth)]
    kind = draw(st.sampled_from(["factorization", "completion", "regression"]))
    reduction = draw(reductions)
    if kind == "regression":
        n = draw(st.integers(1, 5))
        problem = dl.Regression(rng.standard_normal((dims[0], n)), rng.standard_normal((dims[-1], n)),
                                reduction=reduction)
    elif kind == "factorization":
        problem = dl.Factorization(rng.standard_normal((dims[-1], dims[0])), reduction=reduction)
    else:
        problem = dl.Completion(rng.standard_normal((dims[-1], dims[0])),
                                rng.random((dims[-1], dims[0])) < 0.6, reduction=reduction)
    weight_decay = draw(st.one_of(st.just(0.0), st.sampled_from([0.01, 0.5]), st.floats(0.0, 1.0)))
    return weights, problem, weight_decay


@settings(max_examples=examples(60))
@given(case=gradient_cases())
def test_gradients_match_finite_differences(case):
    weights, problem, weight_decay = case

    def loss(ws):
        return dl.loss_and_gradients(dl.DeepLinearNetwork.from_weights(ws), problem, weight_decay)[0]

    f0, test, grads = dl.loss_and_gradients(dl.DeepLinearNetwork.from_weights(weights), problem, weight_decay)
    assert math.isfinite(f0) and f0 >= 0
    assert math.isfinite(test) == isinstance(problem, dl.Completion)
    assert [g.shape for g in grads] == [w.shape for w in weights]

    h = 1e-5
    fd = []
    for l, w in enumerate(weights):
        g = np.empty_like(w)
        for idx in np.ndindex(*w.shape):
            plus = [x.copy() for x in weights]
            minus = [x.copy() for x in weights]
            plus[l][idx] += h
            minus[l][idx] -= h
            g[idx] = (loss(plus) - loss(minus)) / (2 * h)
        fd.append(g)
    scale = max(1.0, f0, max(float(np.max(np.abs(g))) for g in grads))
    for l, (g, g_fd) in enumerate(zip(grads, fd)):
        np.testing.assert_allclose(g, g_fd, rtol=1e-5, atol=1e-7 * scale, err_msg=f"layer {l + 1}")
