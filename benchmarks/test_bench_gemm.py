"""One square d × d GEMM: the core's product path (``_core.matmul64/32``, Eigen routed to
OpenBLAS) against NumPy's ``np.matmul(a, b, out=out)``.  The fastest of the two sets the floor
(3(L−1) GEMMs) that the step benchmarks are measured against.

This file runs before test_bench_step.py (pytest collects files in name order), so the floor
is known when the step benchmarks report their ratios.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchlib import MATMUL, REGISTRY, gemm_flops, rel, timing_from

# (d, dtype, rounds, iterations): about 0.5 s of timing each.
CASES = [
    (1000, np.float64, 25, 1),
    (1000, np.float32, 25, 1),
    (100, np.float64, 50, 20),
]
TOL = {np.dtype(np.float64): 1e-13, np.dtype(np.float32): 1e-5}


def _operands(d, dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((d, d)).astype(dtype)
    b = rng.standard_normal((d, d)).astype(dtype)
    return a, b, np.empty_like(a)


@pytest.mark.parametrize("impl", ["core", "numpy"])
@pytest.mark.parametrize("d, dtype, rounds, iterations", CASES,
                         ids=[f"{np.dtype(c[1])}-d{c[0]}" for c in CASES])
def test_gemm(benchmark, kernels, impl, d, dtype, rounds, iterations):
    a, b, out = _operands(d, dtype)
    dt = np.dtype(dtype)
    if impl == "core":
        fn = MATMUL[dt]
        args = (a, b, out)
    else:
        fn = np.matmul
        args = (a, b)
    kwargs = {} if impl == "core" else {"out": out}

    # correctness first: the core's product equals NumPy's to rounding
    fn(*args, **kwargs)
    expected = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert rel(out, expected) <= TOL[dt]

    benchmark.group = f"gemm {dt} d={d}"
    benchmark.extra_info.update({"impl": impl, "d": d, "dtype": str(dt),
                                 "kernel": kernels["core"] if impl == "core" else kernels["numpy"]})
    benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=rounds, iterations=iterations,
                       warmup_rounds=1)
    assert rel(out, expected) <= TOL[dt]
    t = timing_from(benchmark, f"gemm {impl}", gemm_flops(d))
    if t is not None:
        REGISTRY.gemm[(impl, dt, d)] = t
        print(f"\n  gemm {impl} {dt} d={d}: {t.best * 1e3:.3f} ms, {t.gflops:.1f} GFLOP/s")
