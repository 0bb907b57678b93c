"""One wide GD step of a depth-3 deep linear network, deeplinear against NumPy.

Each case first checks that one deeplinear step equals one NumPy step of the same algorithm
(prefix products + backward sweep; conftest.NumpyStep) from the same weights, then times
further steps of each.  deeplinear's step is timed through the private trainer
(``_core.Trainer64(...).run(1)``: one forward + loss evaluation and one backward + update,
nothing allocated per step).  Ratios: step / floor, floor = 3(L−1) = 6 × the fastest GEMM of the
run (test_bench_gemm.py), and step / NumPy step.  They are printed and stored in
``benchmark.extra_info``; with DEEPLINEAR_BENCH_ASSERT=1 the float64 d = 1000 targets are
asserted (step <= 1.10 × floor, faster than NumPy); float32 and d = 100 are reported only.

The machine is shared and its speed drifts by several percent between consecutive tests, more
than the difference being measured; ``test_step_interleaved`` therefore also times the d = 1000
float64 cases in interleaved rounds (one core GEMM, one NumPy GEMM, one deeplinear step, one
NumPy step per round, each after a 0.2 s pause so that the other library's worker threads have
stopped spinning), so that both sides of each ratio see the same machine state.
"""

from __future__ import annotations

import numpy as np
import pytest

import time

from benchlib import (ASSERT_TARGETS, MATMUL, REGISTRY, TARGET_STEP_OVER_FLOOR, TARGET_STEP_OVER_NUMPY,
                      Interleaved, measure_gemm_now, step_case, step_flops, timing_from)

KINDS = ["factorization", "completion"]
# (d, dtype, rounds, iterations)
WIDE = [(1000, np.float64, 15, 1), (1000, np.float32, 15, 1)]
SMALL = [(100, np.float64, 50, 20)]
CASES = WIDE + SMALL
IDS = [f"{np.dtype(c[1])}-d{c[0]}" for c in CASES]


def _record(benchmark, impl, kind, d, dtype, per_call=1):
    dt = np.dtype(dtype)
    t = timing_from(benchmark, f"step {impl}", step_flops(d), per_call=per_call)
    if t is None:
        return None
    REGISTRY.step[(impl, kind, dt, d, per_call)] = t
    if REGISTRY.floor(dt, d) is None:
        measure_gemm_now(dt, d)
    r = REGISTRY.ratios(kind, dt, d, impl, per_call)
    benchmark.extra_info.update(r)
    line = f"\n  step {impl} {kind} {dt} d={d}: {t.best * 1e3:.3f} ms ({t.gflops:.1f} GFLOP/s)"
    if "step_over_floor" in r:
        line += f", step/floor {r['step_over_floor']:.3f} (floor {r['floor_ms']:.2f} ms)"
    if "step_over_numpy" in r:
        line += f", step/NumPy {r['step_over_numpy']:.3f}"
    print(line)
    return r


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d, dtype, rounds, iterations", CASES, ids=IDS)
def test_step_numpy(benchmark, kernels, kind, d, dtype, rounds, iterations):
    case = step_case(kind, d, dtype)
    case.check()  # deeplinear vs NumPy, first step (once per case)
    benchmark.group = f"step {kind} {np.dtype(dtype)} d={d}"
    benchmark.extra_info.update({"impl": "numpy", "kind": kind, "d": d, "dtype": str(np.dtype(dtype)),
                                 "kernel": kernels["numpy"], "check": case.errors})
    loss = benchmark.pedantic(case.numpy.step, rounds=rounds, iterations=iterations, warmup_rounds=1)
    assert np.isfinite(loss)
    _record(benchmark, "numpy", kind, d, dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d, dtype, rounds, iterations", CASES, ids=IDS)
def test_step_deeplinear(benchmark, kernels, kind, d, dtype, rounds, iterations):
    case = step_case(kind, d, dtype)
    case.check()
    tr = case.trainer
    steps_before = tr.step
    benchmark.group = f"step {kind} {np.dtype(dtype)} d={d}"
    benchmark.extra_info.update({"impl": "deeplinear", "kind": kind, "d": d, "dtype": str(np.dtype(dtype)),
                                 "kernel": kernels["core"], "check": case.errors})
    calls = [0]

    def one_step():
        calls[0] += 1
        return tr.run(1)

    status = benchmark.pedantic(one_step, rounds=rounds, iterations=iterations, warmup_rounds=1)
    assert status == "running"
    case.check_still_finite(steps_before + calls[0])
    r = _record(benchmark, "deeplinear", kind, d, dtype)
    if ASSERT_TARGETS and r and d >= 1000 and np.dtype(dtype) == np.float64:  # the targets
        assert r.get("step_over_floor", 0.0) <= TARGET_STEP_OVER_FLOOR, r
        if "step_over_numpy" in r:
            assert r["step_over_numpy"] < TARGET_STEP_OVER_NUMPY, r


@pytest.mark.parametrize("d, dtype, rounds, iterations", [(100, np.float64, 20, 1)])
def test_step_deeplinear_amortized(benchmark, kernels, d, dtype, rounds, iterations):
    """run(100) at d = 100: the per-step cost without the Python call of run(1)."""
    per_call = 100
    case = step_case("factorization", d, dtype)
    case.check()
    tr = case.trainer
    steps_before = tr.step
    benchmark.group = f"step factorization {np.dtype(dtype)} d={d}"
    benchmark.extra_info.update({"impl": "deeplinear", "steps_per_call": per_call, "d": d,
                                 "kernel": kernels["core"]})
    calls = [0]

    def many_steps():
        calls[0] += 1
        return tr.run(per_call)

    assert benchmark.pedantic(many_steps, rounds=rounds, iterations=iterations, warmup_rounds=1) == "running"
    case.check_still_finite(steps_before + per_call * calls[0])
    _record(benchmark, "deeplinear", "factorization", d, dtype, per_call=per_call)


PAUSE = 0.2  # seconds before each timed part of a round: OpenBLAS's thread timeout is ~0.1 s


@pytest.mark.parametrize("kind", KINDS)
def test_step_interleaved(benchmark, kernels, kind):
    """d = 1000, float64: each round times one core GEMM, one NumPy GEMM, one deeplinear step and
    one NumPy step, back to back; the ratios use the best of each over the same rounds."""
    d, dtype, rounds = 1000, np.dtype(np.float64), 12
    case = step_case(kind, d, dtype)
    case.check()
    tr = case.trainer
    steps_before = tr.step
    rng = np.random.default_rng(2)
    a = rng.standard_normal((d, d))
    b = rng.standard_normal((d, d))
    out = np.empty_like(a)
    parts = {"gemm core": lambda: MATMUL[dtype](a, b, out),
             "gemm numpy": lambda: np.matmul(a, b, out=out),
             "step deeplinear": lambda: tr.run(1),
             "step numpy": case.numpy.step}
    times: dict = {name: [] for name in parts}
    calls = [0]

    def one_round():
        calls[0] += 1
        for name, f in parts.items():
            time.sleep(PAUSE)  # the other library's OpenBLAS threads stop spinning (README.md)
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)

    benchmark.group = f"step interleaved {kind} {dtype} d={d}"
    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1)
    case.check_still_finite(steps_before + calls[0])
    if benchmark.disabled:
        return
    best = {name: min(ts[1:]) for name, ts in times.items()}  # without the warm-up round
    res = Interleaved(kind, dtype, d, best, rounds)
    REGISTRY.interleaved[(kind, dtype, d)] = res
    benchmark.extra_info.update({"interleaved_" + k: v for k, v in res.ratios().items()})
    print(f"\n  interleaved {kind} d={d}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.ratios().items()))
    if ASSERT_TARGETS:
        assert res.ratios()["step/floor"] <= TARGET_STEP_OVER_FLOOR, res.ratios()
        assert res.ratios()["deeplinear/NumPy"] < TARGET_STEP_OVER_NUMPY, res.ratios()
