"""Short ``dl.train`` calls in a Python loop (issue 16): ``steps=1`` calls against one call of
the same number of steps, d = 1000 and d = 300, L = 3, factorization, plain GD.

Research code steps in Python loops (custom schedules, probes between steps).  The next call on
the same network and problem reuses the previous call's core trainer: no new workspace, and its
first loss is the previous call's final one (no second forward pass while the weights are
unchanged).  Three ways to do N steps, in interleaved rounds (best of each):

- ``long``: one call of N steps (per step: the time / N);
- ``loop``: N calls of ``steps=1`` (per call);
- ``fresh``: the same loop with the reuse defeated (a new core trainer each call: what a call
  cost before; ``net._trainer_cache = None`` before each call).

Target: loop / long ≤ 1.1.  Correctness first: the loop's weights and losses equal the long
call's bit for bit (plain GD: no optimizer state between calls).  With
``--benchmark-disable`` (CI) d = 100 and one round.
"""

from __future__ import annotations

import time

import numpy as np

import deeplinear as dl

DEPTH, N, LR_TIMES_C = 3, 10, 1e-4
TARGET = 1.10


def _case(d):
    prob = dl.problems.factorization(d, 10, seed=0)
    w0 = dl.DeepLinearNetwork(DEPTH, d, init="orthogonal", init_scale=1.0, seed=0).weights
    return prob, w0, dl.GD(lr=LR_TIMES_C * d * d)


def _check(d):
    prob, w0, opt = _case(d)
    a, b = dl.DeepLinearNetwork.from_weights(w0), dl.DeepLinearNetwork.from_weights(w0)
    long = dl.train(a, prob, opt, N, progress=False)
    losses = [dl.train(b, prob, opt, 1, progress=False).train_loss for _ in range(N)]
    for k, pair in enumerate(losses):
        assert pair[0] == long.train_loss[k] and pair[1] == long.train_loss[k + 1], k
    for x, y in zip(a.weights, b.weights):
        assert np.array_equal(x, y)


def _rounds(d, rounds):
    prob, w0, opt = _case(d)
    net = dl.DeepLinearNetwork.from_weights(w0)
    dl.train(net, prob, opt, 1, progress=False)  # warm-up: the trainer exists

    def long():
        dl.train(net, prob, opt, N, progress=False)

    def loop():
        for _ in range(N):
            dl.train(net, prob, opt, 1, progress=False)

    def fresh():
        for _ in range(N):
            net._trainer_cache = None
            dl.train(net, prob, opt, 1, progress=False)

    best = {"long": np.inf, "loop": np.inf, "fresh": np.inf}
    for _ in range(rounds):
        for name, f in (("long", long), ("loop", loop), ("fresh", fresh)):
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], (time.perf_counter() - t0) / N)
    net._trainer_cache = None
    dl.train(net, prob, opt, 0, progress=False)  # the next call on the new trainer: still fine
    assert np.isfinite(dl.train(net, prob, opt, 1, progress=False).final_loss)
    return best


def test_short_calls(benchmark):
    full = not benchmark.disabled
    sizes = (1000, 300) if full else (100,)
    rounds = 3 if full else 1
    benchmark.group = "short calls"
    out = {}

    def measure():
        for d in sizes:
            _check(min(d, 300))  # bit-identical loop (checked at <= 300: cheap)
            out[d] = _rounds(d, rounds)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    print(f"\nshort calls, factorization L = {DEPTH}, GD, {N} steps, {dl.get_num_threads()} threads, best of "
          f"{rounds} interleaved rounds (ms per step)")
    for d, b in out.items():
        r, rf = b["loop"] / b["long"], b["fresh"] / b["long"]
        print(f"  d = {d:5d}: one call {b['long'] * 1e3:8.2f}  steps=1 calls {b['loop'] * 1e3:8.2f} ({r:.3f}x)  "
              f"without reuse {b['fresh'] * 1e3:8.2f} ({rf:.3f}x)   target loop/long <= {TARGET}")
        benchmark.extra_info[f"d{d}"] = {k: v * 1e3 for k, v in b.items()} | {"loop_over_long": r,
                                                                                 "fresh_over_long": rf}
