"""Compression at init (fast path), the ρ(t) schedule's fast loop, and the experiments
``deeplinear run equivalence`` / ``run iteration-time`` (quick variants).

* A network never touched since its orthogonal init compresses to blocks ``ε I`` and ρ = ε
  without regenerating its init or a pass over its weights; the result equals the general path
  (structure fit of the weights) to round-off and trains to the same losses.  Any access to the
  core network (training, ``net._core``) ends the "at init" state; copies keep it.
* ``rho_schedule`` equals, bit for bit, the NumPy-scalar loop it replaced (GD, heavy ball,
  Nesterov, weight decay, overflow to inf / NaN).
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest

import deeplinear as dl
from deeplinear import cli
from deeplinear.experiments_compression import (EquivalenceExperiment, IterationTimeExperiment,
                                                stability_edge, target_spectrum)
from deeplinear.parsimony import rho_schedule


@pytest.fixture
def one_thread():
    before = dl.get_num_threads()
    dl.set_num_threads(1)
    yield
    dl.set_num_threads(before)


# -- at-init state and the compress fast path -------------------------------------------------

def test_at_init_state():
    net = dl.DeepLinearNetwork(3, 20, init="orthogonal", init_scale=0.5, seed=1)
    assert net._at_init()
    net.weights, net.dims, net.end_to_end(), net.weight(2), net.describe()  # read-only: stays
    assert net._at_init()
    assert net.copy()._at_init()
    # the initial weights of an untouched network are its weights (no regeneration) ...
    for a, b in zip(net.initial_weights(), net.weights):
        assert np.array_equal(a, b)
    prob = dl.problems.factorization(20, 2, seed=1)
    dl.train(net, prob, dl.GD(lr=0.1), steps=3, progress=False)
    assert not net._at_init()
    assert not net.copy()._at_init()
    # ... and after training they are regenerated, still equal to the original init
    fresh = dl.DeepLinearNetwork(3, 20, init="orthogonal", init_scale=0.5, seed=1)
    for a, b in zip(net.initial_weights(), fresh.weights):
        assert np.array_equal(a, b)
    touched = dl.DeepLinearNetwork(2, 5, seed=0)
    touched._core  # any access from outside counts
    assert not touched._at_init()


@pytest.mark.parametrize("eps", [1e-3, 0.7, -0.3])
def test_compress_at_init_equals_general_path(eps):
    d, r, L = 40, 3, 3
    prob = dl.problems.factorization(d, r, seed=2)
    net = dl.DeepLinearNetwork(L, d, init="orthogonal", init_scale=eps, seed=2)
    fast = dl.compress(net, prob)
    assert net._at_init() and fast.exact
    assert fast.rho == abs(eps)
    for w in fast.blocks.weights:
        assert np.array_equal(w, abs(eps) * np.eye(2 * r))
    other = dl.DeepLinearNetwork(L, d, init="orthogonal", init_scale=eps, seed=2)
    other._core  # not at init any more: the general path (regenerated init, structure fit)
    slow = dl.compress(other, prob)
    assert slow.exact
    assert abs(slow.rho - fast.rho) <= 1e-14 * abs(eps)
    for a, b in zip(fast.blocks.weights, slow.blocks.weights):
        assert np.max(np.abs(a - b)) <= 1e-14 * abs(eps)
    lr = 0.5 * stability_edge(float(np.linalg.svd(prob.target, compute_uv=False)[0]), prob.c, L)
    ra = dl.train(fast, prob, dl.GD(lr=lr), steps=300, progress=False)
    rb = dl.train(slow, prob, dl.GD(lr=lr), steps=300, progress=False)
    rw = dl.train(net, prob, dl.GD(lr=lr), steps=300, progress=False)
    np.testing.assert_allclose(ra.train_loss, rb.train_loss, rtol=1e-12)
    np.testing.assert_allclose(ra.train_loss, rw.train_loss, rtol=1e-10)


def test_compress_with_given_basis_uses_the_general_path():
    d, r = 30, 2
    prob = dl.problems.factorization(d, r, seed=0)
    net = dl.DeepLinearNetwork(3, d, init="orthogonal", init_scale=0.1, seed=0)
    basis = dl.invariant_basis(net, prob)
    comp = dl.compress(net, prob, basis=basis)
    assert comp.exact and abs(comp.rho - 0.1) < 1e-15


# -- rho_schedule: the fast loop equals the NumPy-scalar one ---------------------------------

def _rho_numpy_scalars(eps, lr, depth, steps, lam, c, mu, nesterov):
    out = np.empty(steps + 1)
    rho, b = np.float64(eps), np.float64(0.0)
    out[0] = rho
    p = 2 * depth - 1
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, steps + 1):
            g = c * rho ** p + lam * rho
            if mu == 0.0:
                rho = rho - lr * g
            else:
                b = mu * b + g
                rho = rho - lr * ((mu * b + g) if nesterov else b)
            out[t] = rho
    return out


def test_rho_schedule_bitwise():
    nonfinite = 0
    for eps, lr, L, lam, c, mu, nest in itertools.product(
            [1e-3, 0.5, 3.0], [0.1, 2.5, 250.0], [1, 3, 5], [0.0, 0.5], [1.0, 1e-6],
            [0.0, 0.9], [False, True]):
        if mu == 0.0 and nest:
            continue
        ref = _rho_numpy_scalars(eps, lr, L, 200, lam, c, mu, nest)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = rho_schedule(eps, lr, L, 200, weight_decay=lam, reduction_constant=c, momentum=mu,
                               nesterov=nest)
        # an overflow is reported (RuntimeWarning), a finite schedule is not
        assert [w.category for w in caught] == ([] if np.all(np.isfinite(ref)) else [RuntimeWarning])
        assert got.dtype == np.float64 and got.shape == ref.shape
        assert np.array_equal(got, ref, equal_nan=True), (eps, lr, L, lam, c, mu, nest)
        assert np.array_equal(np.signbit(got), np.signbit(ref))
        nonfinite += not np.all(np.isfinite(ref))
    assert nonfinite > 10  # the overflow path was exercised
    assert np.array_equal(rho_schedule(0.3, 0.1, 3, 0), [0.3])


# -- the experiments ----------------------------------------------------------------------------

def test_target_spectrum_matches_the_problem():
    prob = dl.problems.factorization(50, 4, seed=3)
    np.testing.assert_allclose(target_spectrum(50, 4, 3), np.linalg.svd(prob.target, compute_uv=False)[:4],
                               rtol=1e-12)


def test_equivalence_small(tmp_path, capsys, one_thread):
    exp = replace(EquivalenceExperiment().quick_version(), d=40, rank=2, records=5, samples=50)
    summary = exp.run(str(tmp_path), progress=False)
    text = capsys.readouterr().out
    assert summary["passed"], text
    assert "FAIL" not in text
    assert summary["compressed"]["status"] == "converged"
    assert summary["wide"]["steps"] == summary["compressed"]["steps"]
    assert summary["segmented_equals_single"]
    data = np.load(tmp_path / "equivalence.npz")
    assert data["sv_wide"].shape[1:] == (3, 40) and data["sv_compressed_blocks"].shape[1:] == (3, 4)
    assert json.loads((tmp_path / "equivalence.json").read_text())["passed"]


def test_equivalence_capped_wide_run(tmp_path, capsys, one_thread):
    exp = EquivalenceExperiment(d=40, rank=2, steps=30, records=3, samples=20)
    summary = exp.run(str(tmp_path), progress=False)
    assert summary["passed"] and summary["wide"]["steps"] == 30
    assert summary["max_relative_loss_difference"] <= 1e-10
    assert "--steps" in capsys.readouterr().out  # says how to run the whole trajectory


def test_iteration_time_small(tmp_path, capsys, one_thread):
    exp = IterationTimeExperiment(wide_widths=(30, 60), reduced_widths=(100, 10_000), steps=2,
                                  repeats=1, small_steps=300)
    summary = exp.run(str(tmp_path), progress=False)
    text = capsys.readouterr().out
    rows = {r["d"]: r for r in summary["rows"]}
    assert np.isfinite(rows[60]["wide_s"]) and np.isfinite(rows[60]["compressed_s"])
    assert np.isfinite(rows[10_000]["reduced_s"])
    assert "max/min" in text
    data = np.load(tmp_path / "iteration_time.npz")
    assert list(data["d"]) == [30, 60, 100, 10_000]


def test_iteration_time_skips_wide_over_budget(tmp_path, capsys, one_thread):
    exp = IterationTimeExperiment(wide_widths=(30, 200), reduced_widths=(), steps=1, repeats=1,
                                  small_steps=100, wide_budget=1e-9)
    summary = exp.run(str(tmp_path), progress=False)
    assert summary["wide_skipped"] == [200]
    assert "skipped" in capsys.readouterr().out


def test_cli_registers_the_experiments():
    assert cli.EXPERIMENTS["equivalence"] is EquivalenceExperiment
    assert cli.EXPERIMENTS["iteration-time"] is IterationTimeExperiment
    for cls in (EquivalenceExperiment, IterationTimeExperiment):
        exp = cls().quick_version()
        assert exp.quick
        assert replace(exp, steps=5, seed=1).steps == 5  # the CLI's --steps / --seed
