"""The d x d products of a training step on each BLAS available here, in one run (issue 16).

    python benchmarks/compare_blas.py [--d 1000] [--threads 2] [--rounds 7]

Libraries (each skipped when absent): NumPy's OpenBLAS (ILP64, ``numpy.libs``), the bundled
scipy-openblas32, MKL (the PyPI package ``mkl``: ``libmkl_rt``, LP64 CBLAS) and BLIS (the PyPI
package ``blis``, through its own Python entry point).  The step's products are the square
C = A B (forward), C = A Bᵀ and C = Aᵀ B (backward), float64, row-major, beta = 0.  OpenBLAS
and MKL are called through ctypes (no NumPy call in the timed region); the rounds go through
the libraries in turn, each call after a short pause so that the previous library's worker
threads have gone to sleep, and the best time of each is kept.  Every product is checked
against NumPy.  Not a pytest benchmark: it loads several BLAS libraries into one process.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import sys
import time

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
LAYOUTS = {"NN": (False, False), "NT": (False, True), "TN": (True, False)}


def _cblas(lib, name: str, ilp64: bool):
    f = getattr(lib, name)
    i = ctypes.c_int64 if ilp64 else ctypes.c_int
    p = ctypes.c_void_p
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, ctypes.c_double, p, i, p, i,
                  ctypes.c_double, p, i]
    f.restype = None

    def gemm(a, b, c, ta, tb):
        m, n = c.shape
        k = a.shape[0] if ta else a.shape[1]
        f(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 1.0,
          a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], 0.0, c.ctypes.data, n)
        return c
    return gemm


def libraries(threads: int) -> dict:
    found = {}
    site = os.path.dirname(os.path.dirname(np.__file__))
    for path in glob.glob(os.path.join(site, "numpy.libs", "libscipy_openblas64_*.so")):
        lib = ctypes.CDLL(path)
        lib.scipy_openblas_set_num_threads64_(threads)
        found["openblas (NumPy's, 0.3.31 ILP64)"] = _cblas(lib, "scipy_cblas_dgemm64_", True)
    try:
        import scipy_openblas32 as sob

        lib = ctypes.CDLL(os.path.join(sob.get_lib_dir(), f"lib{sob.get_library()}.so"))
        lib.scipy_openblas_set_num_threads(threads)
        lib.scipy_openblas_get_config.restype = ctypes.c_char_p
        ver = lib.scipy_openblas_get_config().decode().split()[1]
        found[f"openblas (bundled, {ver})"] = _cblas(lib, "scipy_cblas_dgemm", False)
    except ImportError:
        pass
    prefix = sys.prefix
    mkl = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
    if mkl:
        lib = ctypes.CDLL(mkl[0])
        lib.MKL_Set_Num_Threads(threads)
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, 256)
        found[f"mkl ({buf.value.decode().split(' Product')[0].split('Library')[-1].strip()})"] = _cblas(lib, "cblas_dgemm", False)
    try:
        from blis.py import gemm as blis_gemm

        def bgemm(a, b, c, ta, tb):
            if not (ta or tb):
                return blis_gemm(a, b, out=c)
            # blis.py's out= is wrong with a transpose flag (1.3.4): it allocates a new C
            return blis_gemm(a, b, trans1=ta, trans2=tb)
        found["blis (PyPI blis; NT/TN allocate C)"] = bgemm
    except ImportError:
        pass
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--pause", type=float, default=0.3)  # MKL (OpenMP) spins 200 ms
    args = ap.parse_args()
    d = args.d
    rng = np.random.default_rng(0)
    a = rng.standard_normal((d, d))
    b = rng.standard_normal((d, d))
    libs = libraries(args.threads)
    expect = {lay: (a.T if ta else a) @ (b.T if tb else b) for lay, (ta, tb) in LAYOUTS.items()}
    best = {(name, lay): np.inf for name in libs for lay in LAYOUTS}
    c = np.empty((d, d))
    for name, f in libs.items():  # check (and warm up) each
        for lay, (ta, tb) in LAYOUTS.items():
            c.fill(0.0)  # (blis.py reads C even with beta = 0: 0 * NaN)
            got = f(a, b, c, ta, tb)
            err = np.abs(got - expect[lay]).max() / np.abs(expect[lay]).max()
            assert err < 1e-13, (name, lay, err)
    for _ in range(args.rounds):
        for name, f in libs.items():
            for lay, (ta, tb) in LAYOUTS.items():
                time.sleep(args.pause)
                t0 = time.perf_counter()
                f(a, b, c, ta, tb)
                best[(name, lay)] = min(best[(name, lay)], time.perf_counter() - t0)
    flops = 2.0 * d ** 3
    print(f"d = {d}, float64, {args.threads} threads, best of {args.rounds} rounds (ms, GFLOP/s)")
    print(f"{'library':<44}" + "".join(f"{lay:>16}" for lay in LAYOUTS) + f"{'6 GEMMs':>10}")
    for name in libs:
        cells = "".join(f"{best[(name, lay)] * 1e3:8.2f} ({flops / best[(name, lay)] / 1e9:5.1f})"
                        for lay in LAYOUTS)
        # a step: 2 forward NN, 2 NT + 2 TN backward (L = 3); the floor counts 6 of the mean
        six = 2 * sum(best[(name, lay)] for lay in LAYOUTS)
        print(f"{name:<44}{cells}{six * 1e3:10.1f}")


if __name__ == "__main__":
    main()
