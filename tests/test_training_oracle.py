"""``dl.train`` against the NumPy oracle (``oracle.train_numpy``): per-step losses, final
weights, recording, float32, ``tol=``.

Settings are chosen so that every run is stable, the loss decreases (asserted) and the
trajectory is not chaotic: the oracle itself, started from weights perturbed by 1e-14
(relative), stays within 1e-11 of its unperturbed run in every case here, while the core
agrees with the oracle to 2e-12 at worst (1e-10 asserted).  RMSProp with eps=1e-8 on the "sum"
losses is chaotic: late in a run it acts like sign descent, and round-off differences grow to
O(1), in the oracle against itself as much as against the core (checked; not a library bug).
Its eps is therefore 1e-4 (centered: 1e-3) for "sum" and the same times c² for "mean" (the
same regime: RMSProp is invariant under f → s f, eps → s² eps).
"""

from __future__ import annotations

import numpy as np
import pytest

import deeplinear as dl
import oracle

STEPS = 200
D, RANK = 12, 2           # factorization / completion: d × d target of rank 2
N_SAMPLES = 20            # regression


# -- problems and optimizers ----------------------------------------------------------------------

def make_problem(kind, reduction, seed, d=D, rank=RANK):
    rng = np.random.default_rng(seed)
    phi = dl.problems.low_rank_target(d, rank, rng)
    phi /= np.linalg.norm(phi, 2)          # ‖Φ‖₂ = 1
    if kind == "factorization":
        return dl.Factorization(phi, reduction=reduction)
    mask = rng.random((d, d)) < 0.5
    return dl.Completion(phi, mask, reduction=reduction)


def make_regression(dims, reduction, seed):
    rng = np.random.default_rng(seed)
    d_in, d_out = dims[0], dims[-1]
    X = rng.standard_normal((d_in, N_SAMPLES)) / np.sqrt(N_SAMPLES)
    A = rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)
    Y = A @ X + 0.1 * rng.standard_normal((d_out, N_SAMPLES)) / np.sqrt(N_SAMPLES)
    return dl.Regression(X, Y, reduction=reduction)


def make_optimizer(name, reduction, weight_decay, *, c_inv, slow=1.0):
    """An optimizer of the table below.

    ``c_inv`` is 1/c of the "mean" loss.  With the "mean" reduction the GD steps are scaled by
    it (so that "sum" and "mean" take comparable steps) and RMSProp's eps and initial_scale by
    its inverse square (same regime: RMSProp is invariant under f → s f, eps → s² eps).
    ``weight_decay`` is a flag: λ = 0.1 for "sum", 1e-3 for "mean" (λ is not scaled by c, so a
    "mean" λ of 0.1 with a step scaled by 1/c would make η λ > 2).  ``slow`` scales every step.
    """
    mean = reduction == "mean"
    s = c_inv if mean else 1.0
    q = 1.0 / c_inv ** 2 if mean else 1.0
    wd = (1e-3 if mean else 0.1) if weight_decay else 0.0
    eps = 1e-4 * q           # RMSProp
    eps_c = 1e-3 * q         # centered RMSProp: v − m² gets small when the gradient is steady
    table = {
        "gd": lambda: dl.GD(lr=0.1 * s * slow, weight_decay=wd),
        "gd_momentum": lambda: dl.GD(lr=0.03 * s * slow, momentum=0.9, weight_decay=wd),
        "gd_nesterov": lambda: dl.GD(lr=0.03 * s * slow, momentum=0.9, nesterov=True, weight_decay=wd),
        "adam": lambda: dl.Adam(lr=3e-3 * slow, weight_decay=wd),
        "rmsprop": lambda: dl.RMSProp(lr=1e-3 * slow, eps=eps, weight_decay=wd),
        "rmsprop_centered": lambda: dl.RMSProp(lr=1e-3 * slow, eps=eps_c, centered=True, weight_decay=wd),
        "rmsprop_momentum": lambda: dl.RMSProp(lr=3e-4 * slow, eps=eps, momentum=0.9, weight_decay=wd),
        # variants (fewer cases)
        "gd_nesterov_half": lambda: dl.GD(lr=0.05 * s * slow, momentum=0.5, nesterov=True, weight_decay=wd),
        "adam_eps_root": lambda: dl.Adam(lr=3e-3 * slow, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10,
                                         weight_decay=wd),
        "rmsprop_nesterov": lambda: dl.RMSProp(lr=3e-4 * slow, eps=eps, momentum=0.9, nesterov=True,
                                               weight_decay=wd),
        "rmsprop_initial_scale": lambda: dl.RMSProp(lr=1e-3 * slow, decay=0.95, eps=eps, initial_scale=1e-2 * q,
                                                    weight_decay=wd),
        "rmsprop_centered_momentum": lambda: dl.RMSProp(lr=3e-4 * slow, eps=eps_c, centered=True,
                                                        momentum=0.9, weight_decay=wd),
    }
    return table[name]()


MAIN_OPTIMIZERS = ["gd", "gd_momentum", "gd_nesterov", "adam", "rmsprop", "rmsprop_centered",
                   "rmsprop_momentum"]
VARIANT_OPTIMIZERS = ["gd_nesterov_half", "adam_eps_root", "rmsprop_nesterov", "rmsprop_initial_scale",
                      "rmsprop_centered_momentum"]


# -- comparison helpers -------------------------------------------------------------------------

def max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def weights_rel(a, b):
    num = np.sqrt(sum(np.sum((np.asarray(x, np.float64) - y) ** 2) for x, y in zip(a, b)))
    return float(num / np.sqrt(sum(np.sum(y ** 2) for y in b)))


def run_and_compare(net, prob, opt, steps=STEPS, *, loss_rtol=1e-10, weight_rtol=1e-9, decrease=0.7):
    """Train ``net`` with the core and the oracle from the same weights; check the histories."""
    w0 = net.weights
    res = dl.train(net, prob, opt, steps=steps, progress=False)
    ref = oracle.train_like(w0, prob, opt, steps)

    assert res.status == "max_steps"
    assert res.n_steps == steps
    np.testing.assert_array_equal(res.steps, np.arange(steps + 1))
    assert res.train_loss.shape == (steps + 1,)
    assert np.all(np.isfinite(res.train_loss))

    err = max_rel(res.train_loss, ref.train_loss)
    assert err <= loss_rtol, f"train loss differs from the oracle by {err:.2e} (relative)"
    if prob.kind == "completion":
        assert res.test_loss is not None and res.test_loss.shape == (steps + 1,)
        err = max_rel(res.test_loss, ref.test_loss)
        assert err <= loss_rtol, f"test loss differs from the oracle by {err:.2e} (relative)"
    else:
        assert res.test_loss is None
    err = weights_rel(net.weights, ref.weights)
    assert err <= weight_rtol, f"final weights differ from the oracle by {err:.2e} (relative)"
    # the run must actually train
    assert res.train_loss[-1] < decrease * res.train_loss[0], (
        f"loss did not decrease enough: {res.train_loss[0]:.3e} -> {res.train_loss[-1]:.3e}")
    return res, ref


# -- the main grid --------------------------------------------------------------------------------

@pytest.mark.parametrize("weight_decay", [False, True], ids=["wd0", "wd"])
@pytest.mark.parametrize("opt_name", MAIN_OPTIMIZERS)
@pytest.mark.parametrize("depth", [2, 3, 4, 5])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("kind", ["factorization", "completion"])
def test_train_matches_oracle(kind, reduction, depth, opt_name, weight_decay):
    prob = make_problem(kind, reduction, seed=depth)
    # orthogonal init for factorization (the setting of the law of parsimony), Gaussian for
    # completion; completion steps are halved (it fits the observed entries fast, and the
    # relative loss error grows as the loss goes to 0)
    init = "orthogonal" if kind == "factorization" else "gaussian"
    net = dl.DeepLinearNetwork(depth=depth, width=D, init=init, init_scale=1.0, seed=depth)
    opt = make_optimizer(opt_name, reduction, weight_decay, c_inv=D * D,
                         slow=1.0 if kind == "factorization" else 0.5)
    run_and_compare(net, prob, opt)


@pytest.mark.parametrize("weight_decay", [False, True], ids=["wd0", "wd"])
@pytest.mark.parametrize("opt_name", VARIANT_OPTIMIZERS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("kind", ["factorization", "completion"])
def test_train_matches_oracle_optimizer_variants(kind, reduction, opt_name, weight_decay):
    prob = make_problem(kind, reduction, seed=30, rank=3)
    net = dl.DeepLinearNetwork(depth=3, width=D, init="orthogonal", init_scale=1.0, seed=30)
    opt = make_optimizer(opt_name, reduction, weight_decay, c_inv=D * D,
                         slow=1.0 if kind == "factorization" else 0.5)
    run_and_compare(net, prob, opt)


@pytest.mark.parametrize("weight_decay", [False, True], ids=["wd0", "wd"])
@pytest.mark.parametrize("opt_name", ["gd", "gd_momentum", "adam", "rmsprop_centered"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dims", [[8, 10, 6], [6, 4, 9, 5], [5, 5, 5, 5, 5]],
                         ids=lambda d: "x".join(map(str, d)))
def test_regression_matches_oracle(dims, reduction, opt_name, weight_decay):
    prob = make_regression(dims, reduction, seed=len(dims))
    net = dl.DeepLinearNetwork(depth=len(dims) - 1, dims=dims, init="orthogonal", init_scale=1.0, seed=4)
    opt = make_optimizer(opt_name, reduction, weight_decay, c_inv=dims[-1] * N_SAMPLES)
    run_and_compare(net, prob, opt)


def test_rectangular_factorization_matches_oracle():
    rng = np.random.default_rng(8)
    target = rng.standard_normal((7, 9)) / 4
    prob = dl.Factorization(target, reduction="sum")
    net = dl.DeepLinearNetwork(depth=4, dims=[9, 14, 5, 11, 7], init="gaussian", init_scale=1.0, seed=8)
    run_and_compare(net, prob, dl.GD(lr=0.05, momentum=0.5, weight_decay=0.01))


# -- optimizer state and recording ------------------------------------------------------------------

def test_each_train_call_starts_a_fresh_optimizer_state():
    """Two calls of 100 steps = the oracle restarted after 100 steps (Adam: bias correction
    restarts), not one run of 200 steps."""
    prob = make_problem("factorization", "mean", seed=2)
    net = dl.DeepLinearNetwork(depth=3, width=D, init_scale=1.0, seed=2)
    opt = dl.Adam(lr=3e-3, weight_decay=0.1)
    w0 = net.weights
    r1 = dl.train(net, prob, opt, steps=100, progress=False)
    r2 = dl.train(net, prob, opt, steps=100, progress=False)
    o1 = oracle.train_like(w0, prob, opt, 100)
    o2 = oracle.train_like(o1.weights, prob, opt, 100)
    assert max_rel(r1.train_loss, o1.train_loss) < 1e-12
    assert max_rel(r2.train_loss, o2.train_loss) < 1e-12
    assert weights_rel(net.weights, o2.weights) < 1e-12
    once = oracle.train_like(w0, prob, opt, 200)
    assert abs(once.train_loss[-1] - o2.train_loss[-1]) > 1e-6 * once.train_loss[-1]


@pytest.mark.parametrize("record_every", [1, 3, 7, 10, 199, 200, 250])
@pytest.mark.parametrize("kind", ["factorization", "completion"])
def test_record_every_is_a_subsequence(kind, record_every):
    prob = make_problem(kind, "mean", seed=5)
    opt = dl.GD(lr=0.05 * D * D, momentum=0.5, weight_decay=1e-3)
    net_full = dl.DeepLinearNetwork(depth=3, width=D, init_scale=1.0, seed=5)
    net_sub = net_full.copy()
    full = dl.train(net_full, prob, opt, steps=STEPS, progress=False)
    sub = dl.train(net_sub, prob, opt, steps=STEPS, record_every=record_every, progress=False)

    expected = list(range(0, STEPS + 1, record_every))
    if expected[-1] != STEPS:
        expected.append(STEPS)
    np.testing.assert_array_equal(sub.steps, expected)
    assert sub.status == "max_steps" and sub.n_steps == STEPS
    np.testing.assert_allclose(sub.train_loss, full.train_loss[expected], rtol=1e-13, atol=0)
    if kind == "completion":
        np.testing.assert_allclose(sub.test_loss, full.test_loss[expected], rtol=1e-13, atol=0)
    else:
        assert sub.test_loss is None
    assert weights_rel(net_sub.weights, net_full.weights) < 1e-13


def test_zero_steps_records_the_initial_loss():
    prob = make_problem("completion", "sum", seed=6)
    net = dl.DeepLinearNetwork(depth=2, width=D, init_scale=1.0, seed=6)
    w0 = net.weights
    res = dl.train(net, prob, dl.GD(lr=0.1, weight_decay=0.1), steps=0, progress=False)
    ref_train, ref_test = oracle.losses(w0, oracle.problem_from_dl(prob), 0.1)
    assert res.status == "max_steps" and res.n_steps == 0
    np.testing.assert_array_equal(res.steps, [0])
    assert res.train_loss[0] == pytest.approx(ref_train, rel=1e-13)
    assert res.test_loss[0] == pytest.approx(ref_test, rel=1e-13)
    for a, b in zip(net.weights, w0):
        np.testing.assert_array_equal(a, b)


# -- float32 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("opt_name", ["gd", "gd_nesterov", "adam", "rmsprop_centered"])
@pytest.mark.parametrize("kind", ["factorization", "completion"])
def test_float32_follows_float64_oracle(kind, opt_name):
    steps = 50
    prob = make_problem(kind, "mean", seed=9)
    net64 = dl.DeepLinearNetwork(depth=3, width=D, init_scale=1.0, seed=9)
    net = dl.DeepLinearNetwork.from_weights([w.astype(np.float32) for w in net64.weights])
    assert net.dtype == np.float32
    w0 = net.weights                       # float32 start, promoted to float64 by the oracle
    opt = make_optimizer(opt_name, "mean", True, c_inv=D * D)
    res = dl.train(net, prob, opt, steps=steps, progress=False)
    ref = oracle.train_like(w0, prob, opt, steps)
    assert res.status == "max_steps"
    assert res.train_loss.dtype == np.float64
    assert max_rel(res.train_loss, ref.train_loss) < 1e-3
    if kind == "completion":
        assert max_rel(res.test_loss, ref.test_loss) < 1e-3
    assert all(w.dtype == np.float32 for w in net.weights)
    assert weights_rel(net.weights, ref.weights) < 1e-3
    assert res.train_loss[-1] < 0.7 * res.train_loss[0]


# -- tol= -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("record_every", [1, 25])
@pytest.mark.parametrize("kind", ["factorization", "completion"])
def test_tol_stops_at_the_first_loss_below_it(kind, record_every):
    prob = make_problem(kind, "sum", seed=12)
    net = dl.DeepLinearNetwork(depth=3, width=D, init_scale=1.0, seed=12)
    opt = dl.GD(lr=0.05)
    w0 = net.weights
    ref = oracle.train_like(w0, prob, opt, 300)
    # a tolerance half-way (geometrically) between the losses after 86 and 87 steps
    k = 87
    assert ref.train_loss[k] < ref.train_loss[k - 1]
    tol = float(np.sqrt(ref.train_loss[k] * ref.train_loss[k - 1]))
    assert np.all(ref.train_loss[:k] > tol)

    res = dl.train(net, prob, opt, steps=300, tol=tol, record_every=record_every, progress=False)
    assert res.status == "converged"
    assert res.n_steps == k
    assert res.steps[-1] == k
    assert res.train_loss[-1] <= tol
    assert res.train_loss[-2] > tol
    assert np.all(res.train_loss[:-1] > tol)
    expected = list(range(0, k, record_every)) + [k]
    np.testing.assert_array_equal(res.steps, expected)
    assert max_rel(res.train_loss, ref.train_loss[expected]) < 1e-10
    if kind == "completion":
        assert max_rel(res.test_loss, ref.test_loss[expected]) < 1e-10
    # the network holds the weights after k steps
    ref_k = oracle.train_like(w0, prob, opt, k)
    assert weights_rel(net.weights, ref_k.weights) < 1e-9


def test_tol_above_the_initial_loss_converges_at_step_zero():
    prob = make_problem("factorization", "mean", seed=13)
    net = dl.DeepLinearNetwork(depth=2, width=D, init_scale=1.0, seed=13)
    w0 = net.weights
    l0 = oracle.loss(w0, oracle.problem_from_dl(prob))
    res = dl.train(net, prob, dl.GD(lr=1.0), steps=50, tol=2 * l0, progress=False)
    assert res.status == "converged" and res.n_steps == 0
    np.testing.assert_array_equal(res.steps, [0])
    assert res.train_loss[0] == pytest.approx(l0, rel=1e-13)
    for a, b in zip(net.weights, w0):
        np.testing.assert_array_equal(a, b)


def test_tol_not_reached_runs_all_steps():
    prob = make_problem("factorization", "mean", seed=14)
    net = dl.DeepLinearNetwork(depth=2, width=D, init_scale=1.0, seed=14)
    res = dl.train(net, prob, dl.GD(lr=0.1 * D * D, weight_decay=1e-3), steps=60, tol=1e-30, progress=False)
    assert res.status == "max_steps" and res.n_steps == 60
    np.testing.assert_array_equal(res.steps, np.arange(61))
