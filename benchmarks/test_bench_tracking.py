"""Cost of tracking singular values during training (d = 1000, L = 3, factorization).

In one run: a wide GD step with tracking every step in each mode, timed in rounds against a plain step —
``"structured"`` (one 2r × 2r SVD per layer plus ρ), ``"incremental"`` (warm-started block
Krylov iteration for the top k = 2r triplets) and ``"full"`` (an exact SVD of every layer) — reported
as ratios to the plain step.  Targets (reported, asserted only with DEEPLINEAR_BENCH_ASSERT=1):
structured ≤ 1.02×, incremental ≤ 1.10×; full is about 8× a step (7.7 measured), for contrast.

Correctness first: the recorded singular values of every mode equal NumPy's SVD of the weights.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import deeplinear as dl
from deeplinear.training import _CORE_TRAINER, _setup_tracking
from benchlib import ASSERT_TARGETS

D, RANK, DEPTH = 1000, 10, 3
LR = 100.0  # mean reduction: lr * c = 1e-4, stable for thousands of steps
MODES = [None, "structured", "incremental", "full"]


def _trainer(track):
    net = dl.DeepLinearNetwork(depth=DEPTH, width=D, init_scale=1.0, seed=0)
    prob = _problem()
    opt = dl.GD(lr=LR)
    a, b = prob._core_args(net.dtype)
    tr = _CORE_TRAINER[net.dtype](net._writable_core(), prob.kind, a, b, prob.c, opt._config(), 1, -1.0, 0)
    if track is not None:
        _setup_tracking(tr, net, prob, opt, 10_000, dl.Tracking(track), _basis(net, prob))
    return tr, net


_CACHE: dict = {}


def _problem():
    if "prob" not in _CACHE:
        _CACHE["prob"] = dl.problems.factorization(D, RANK, seed=0)
    return _CACHE["prob"]


def _basis(net, prob):
    if "basis" not in _CACHE:
        _CACHE["basis"] = dl.invariant_basis(net, prob)
    return _CACHE["basis"]


@pytest.mark.parametrize("track", MODES, ids=[m or "none" for m in MODES])
def test_tracking_overhead(benchmark, track):
    """Rounds of one plain step then one tracked step (each ``Trainer.run(1)``, on trainers made
    alike), interleaved so that the machine's drift slows both alike: the ratio is the median of
    the rounds' tracked / plain times."""
    tr, net = _trainer(track)
    plain = _trainer(None)[0] if track is not None else None
    tr.run(3)  # leave the init, where all singular values are equal
    if track is not None:
        plain.run(3)
        w1 = net.weight(1)  # run(1) records the current step, then updates
        tr.run(1)
        plain.run(1)
        t = tr.tracking(DEPTH)
        s_np = np.linalg.svd(w1, compute_uv=False)
        got = t["singular_values"][-1, 0]
        n = np.count_nonzero(np.isfinite(got))
        assert np.max(np.abs(got[:n] - s_np[:n])) <= 1e-10 * s_np[0], track
    rounds = 3 if track == "full" else 10
    times = {"plain": [], "tracked": []}

    def one_round():
        if plain is not None:
            t0 = time.perf_counter()
            plain.run(1)
            times["plain"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tr.run(1)
        times["tracked"].append(time.perf_counter() - t0)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1)
    assert tr.status == "running"  # a stopped trainer would time nothing
    if benchmark.disabled or plain is None:
        return
    pt, tt = np.array(times["plain"][1:]), np.array(times["tracked"][1:])  # without the warm-up
    ratio = float(np.median(tt / pt))
    benchmark.extra_info["ratio_to_plain_step"] = ratio
    print(f"\n  tracking {track}: {np.median(tt) * 1e3:.1f} ms per step = {ratio:.3f} x the plain step "
          f"({np.median(pt) * 1e3:.1f} ms), median of {len(tt)} interleaved rounds")
    if ASSERT_TARGETS and track in ("structured", "incremental"):
        assert ratio <= {"structured": 1.02, "incremental": 1.10}[track]
