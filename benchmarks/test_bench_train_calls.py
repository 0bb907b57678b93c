"""Whole ``dl.train`` calls at d = 1000, L = 3 (issue 14): compression from explicit weights,
the headline (compress + train to 1e-10) from explicit weights, the tracking set-up of a call
(reference basis + first record) on a first and a repeated call on the same network, and the
cost of tracking every step relative to a plain call at 30 and 300 steps (incremental and
structured; the plain and tracked calls interleaved round by round, the median of the rounds'
ratios, the network's construction not timed): on a network whose set-up a previous call made
(the ratios of the issue; the set-up is reported apart), and at 30 steps also on a fresh network
(set-up included).

The headline is reported whole and split (compress / the first train call's set-up / the
steps).  Correctness first: the compressed run from explicit weights converges and its final loss equals
the lifted network's; the tracked calls record the values NumPy's SVD gives.  With
``--benchmark-disable`` (CI) everything runs at d = 100 and a few steps; timings are printed,
never asserted (targets in the docstring of the issue: compress ≤ 10 ms, headline ≤ 50 ms,
ratios 1.10 / 1.02 at 30 steps).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import deeplinear as dl
from deeplinear.experiments import stable_lr

RANK, DEPTH, EPS, SEED = 10, 3, 1e-3, 0


def _best(fn, rounds):
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def _check_last_record(net, res):
    """The last record's values equal NumPy's SVD of the final weights (to 1e-9 s_1)."""
    for l, w in enumerate(net.weights):
        exact = np.linalg.svd(w, compute_uv=False)
        got = res.tracking["singular_values"][-1, l]
        got = got[np.isfinite(got)]
        np.testing.assert_allclose(got, exact[:got.size], rtol=0, atol=1e-9 * exact[0])


def test_train_calls(benchmark):
    full = not benchmark.disabled
    d = 1000 if full else 100
    rounds = 5 if full else 1
    prob = dl.problems.factorization(d, RANK, seed=SEED)
    init = dl.DeepLinearNetwork(DEPTH, d, init_scale=EPS, seed=SEED).weights
    # 0.91x the stability edge (250 at d = 1000, as in test_bench_compression.py)
    lr = 250.0 if d == 1000 else stable_lr(float(np.linalg.norm(prob.target, 2)), prob.c, DEPTH)
    out = {}

    # 1. compress from explicit weights (a network made by from_weights: no seed, no fast path)
    t, comp = _best(lambda: dl.compress(dl.DeepLinearNetwork.from_weights(init), prob), rounds)
    out["compress_from_weights"] = t
    wnet = dl.DeepLinearNetwork.from_weights(init)
    t, comp = _best(lambda: dl.compress(wnet, prob), rounds)
    out["compress_from_weights_excl_from_weights"] = t

    # 2. the headline from explicit weights: compress + train to 1e-10, split into compress, the
    #    first train call's set-up (a 0-step call on a freshly compressed network: checks, the
    #    compressed problem, the trainer, the result) and the rest of the call (the steps)
    def setup_call():
        c = dl.compress(wnet, prob)
        t0 = time.perf_counter()
        dl.train(c, prob, dl.GD(lr=lr), 0, progress=False)
        return time.perf_counter() - t0

    out["headline_first_call_setup"] = min(setup_call() for _ in range(rounds))

    def headline():
        t0 = time.perf_counter()
        c = dl.compress(wnet, prob)
        t1 = time.perf_counter()
        r = dl.train(c, prob, dl.GD(lr=lr), 30_000, tol=1e-10, progress=False)
        return c, r, t1 - t0, time.perf_counter() - t1

    t, (comp, res, t_comp, t_call) = _best(headline, rounds)
    assert res.status == "converged", res.status
    ws = comp.lift().weights
    np.testing.assert_allclose(res.final_loss, prob.loss(np.linalg.multi_dot(ws[::-1])), rtol=1e-6, atol=1e-14)
    out["headline_from_weights"] = t
    out["headline_compress"] = t_comp  # of the fastest round
    out["headline_steps_part"] = t_call - out["headline_first_call_setup"]
    out["headline_steps"] = res.n_steps

    # 3. tracking set-up of a call: a 0-step call with tracking minus one without, on a fresh
    #    network (first call) and again on the same network (reference basis, last record, warm
    #    starts and bulk value of the previous call reused: its weights are unchanged)
    opt = dl.GD(lr=lr)
    net = dl.DeepLinearNetwork(DEPTH, d, init_scale=1.0, seed=SEED)
    t_plain, _ = _best(lambda: dl.train(net, prob, opt, 0, progress=False), rounds)
    for mode in ("incremental", "structured"):
        fresh = dl.DeepLinearNetwork(DEPTH, d, init_scale=1.0, seed=SEED)
        t0 = time.perf_counter()
        dl.train(fresh, prob, opt, 0, progress=False, track=mode)
        out[f"setup_{mode}_first"] = time.perf_counter() - t0 - t_plain
        t, _ = _best(lambda: dl.train(fresh, prob, opt, 0, progress=False, track=mode), rounds)
        out[f"setup_{mode}_repeat"] = t - t_plain

    # 4. per-call ratios, tracking every step, at 30 and 300 steps, the three calls interleaved
    #    round by round (a loaded machine slows them alike): the ratio of each round's tracked
    #    call to that round's plain one, the median over the rounds.  "repeated": every call
    #    continues on the same network, whose set-up (reference basis, first record) a 0-step
    #    call made before the timed rounds (the set-up is measured apart, in 3.); "fresh": every
    #    call on a new network, its set-up included (30 steps only: at 300 it is ~0.2 %).
    modes = (None, "incremental", "structured")
    for steps, kind in (((30, "fresh"), (30, "repeated"), (300, "repeated")) if full else ((3, "fresh"), (3, "repeated"))):
        times = {mode: [] for mode in modes}
        nets = {}
        if kind == "repeated":
            for mode in modes:
                nets[mode] = dl.DeepLinearNetwork(DEPTH, d, init_scale=1.0, seed=SEED)
                dl.train(nets[mode], prob, dl.GD(lr=lr * 0.4), 0, progress=False, track=mode)
        for _ in range(1 if steps == 300 else max(1, rounds - 2)):
            for mode in modes:
                n = nets[mode] if kind == "repeated" else dl.DeepLinearNetwork(DEPTH, d, init_scale=1.0, seed=SEED)
                t0 = time.perf_counter()
                r = dl.train(n, prob, dl.GD(lr=lr * 0.4), steps, progress=False, track=mode)
                times[mode].append(time.perf_counter() - t0)
                if mode is not None:
                    assert r.tracking["singular_values"].shape[0] == steps + 1
                    _check_last_record(n, r)
        plain = np.array(times[None])
        suffix = f"{steps}" if kind == "repeated" else f"{steps}_fresh"
        for mode in ("incremental", "structured"):
            out[f"ratio_{mode}_{suffix}"] = float(np.median(np.array(times[mode]) / plain))
        out[f"plain_{suffix}"] = float(np.median(plain))

    benchmark.extra_info.update(out)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\n  d = {d}: " + ", ".join(f"{k} = {v * 1e3:.1f} ms" if isinstance(v, float) and not k.startswith("ratio")
                                       else f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}"
                                       for k, v in out.items()))
