"""deeplinear and NumPy taking turns, as users work (issue 16): rounds of
``dl.train(net, prob, opt, steps=2)`` at d = 1000, L = 3, then one NumPy GEMM ``a @ a``, against
the same calls not interleaved (all the trainings, then all the GEMMs), per round.

Measured in one run on each BLAS binding of the core (deeplinear._loader.bind_blas):

- ``bundled``: the core on scipy-openblas32 while NumPy runs on its own OpenBLAS: two libraries,
  two pools of worker threads that keep spinning after each call (the layout before the core
  shared NumPy's library);
- ``numpy``: the core on NumPy's OpenBLAS, one library and one pool (the default where NumPy
  runs on OpenBLAS);
- ``mkl`` (when the ``mkl`` package is installed): the core on MKL (opt-in,
  ``DEEPLINEAR_BLAS_LIBRARY=mkl``), its OpenMP pool beside NumPy's OpenBLAS pool.

Blocks (library x interleaved/separated) alternate in order over the repeats, so that both sides
of each ratio see the same machine state; per-round medians over the repeats.  Correctness: the
same sequence of calls on both libraries gives the same weights (products differ only in
rounding), and NumPy's GEMM result is checked.  Target (asserted with DEEPLINEAR_BENCH_ASSERT=1):
interleaved <= 1.05 x separated on the shared library.
"""

from __future__ import annotations

import time

import numpy as np

import deeplinear as dl
from deeplinear import _loader

from benchlib import ASSERT_TARGETS, kernel_info

TARGET_INTERLEAVED_OVER_SEPARATED = 1.05
D = 1000
LIBRARIES = ("bundled", "numpy") + (("mkl",) if _loader._mkl_path() is not None else ())
MODES = ("interleaved", "separated")
ROUNDS, REPEATS = 4, 2  # rounds per timed block, repeats of the four blocks (alternating order)


def _block(mode: str, net, prob, opt, a: np.ndarray, out: np.ndarray, rounds: int) -> float:
    """Seconds per round of `rounds` rounds (train 2 steps + one NumPy GEMM)."""
    t0 = time.perf_counter()
    if mode == "interleaved":
        for _ in range(rounds):
            dl.train(net, prob, opt, 2, progress=False)
            np.matmul(a, a, out=out)
    else:
        for _ in range(rounds):
            dl.train(net, prob, opt, 2, progress=False)
        for _ in range(rounds):
            np.matmul(a, a, out=out)
    return (time.perf_counter() - t0) / rounds


def test_interleaved_with_numpy(benchmark):
    rng = np.random.default_rng(0)
    target = rng.standard_normal((D, D)) / np.sqrt(D)
    prob = dl.Factorization(target)
    opt = dl.GD(lr=1e-3)
    a = rng.standard_normal((D, D))
    out = np.empty_like(a)
    start = dl.DeepLinearNetwork(3, D, seed=0)
    nets = {lib: start.copy() for lib in LIBRARIES}
    default = dl.build_info()["blas_source"]
    rounds, repeats = (1, 1) if benchmark.disabled else (ROUNDS, REPEATS)
    times: dict = {(lib, mode): [] for lib in LIBRARIES for mode in MODES}
    libraries: dict = {}

    def run_all():
        for rep in range(repeats):
            order = [(lib, mode) for lib in LIBRARIES for mode in MODES]
            for lib, mode in order if rep % 2 == 0 else order[::-1]:
                got = _loader.bind_blas(lib)
                libraries[lib] = (got, kernel_info())
                _block(mode, nets[lib], prob, opt, a, out, 1)  # warm-up: pools awake, workspace
                times[(lib, mode)].append(_block(mode, nets[lib], prob, opt, a, out, rounds))

    try:
        benchmark.pedantic(run_all, rounds=1, iterations=1)
    finally:
        _loader.bind_blas(default if default in ("bundled", "numpy", "mkl") else "numpy")

    # correctness: the same calls on every library, the same weights; NumPy's product
    w = {lib: nets[lib].weights for lib in LIBRARIES}
    for lib in LIBRARIES[1:]:
        for wb, wn in zip(w["bundled"], w[lib]):
            assert np.all(np.isfinite(wn))
            np.testing.assert_allclose(wn, wb, rtol=0, atol=1e-10 * np.abs(wb).max())
    np.testing.assert_allclose(out, a @ a, rtol=0, atol=1e-10 * D)
    if benchmark.disabled:
        return

    print(f"\n  interleaved rounds: dl.train(steps=2) at d={D}, L=3, then one NumPy GEMM; "
          f"{rounds} rounds x {repeats} repeats per block")
    ratios = {}
    for lib in LIBRARIES:
        got, info = libraries[lib]
        med = {mode: float(np.median(times[(lib, mode)])) for mode in MODES}
        ratios[lib] = med["interleaved"] / med["separated"]
        print(f"  core on {lib:<8} ({got}): {info['core_library']}")
        print(f"      BLAS libraries loaded (threadpoolctl): {info['numpy']}")
        print(f"      per round: interleaved {med['interleaved'] * 1e3:7.1f} ms, separated "
              f"{med['separated'] * 1e3:7.1f} ms, ratio {ratios[lib]:.3f} "
              f"(all: " + ", ".join(f"{m} " + " ".join(f"{t * 1e3:.0f}" for t in times[(lib, m)])
                                    for m in MODES) + " ms)")
        benchmark.extra_info.update({f"{lib}_{m}_ms": med[m] * 1e3 for m in MODES})
        benchmark.extra_info[f"{lib}_interleaved_over_separated"] = ratios[lib]
    if ASSERT_TARGETS and libraries["numpy"][0] == "numpy":
        assert ratios["numpy"] <= TARGET_INTERLEAVED_OVER_SEPARATED, ratios
