"""The d x d products of a training step on each BLAS available here, one process each (issue 16).

    python benchmarks/compare_blas.py [--d 1000 300] [--threads 2] [--rounds 5] [--dtype float64]

Libraries (each skipped when absent): NumPy's OpenBLAS (ILP64, ``numpy.libs``), the bundled
scipy-openblas32, MKL (the PyPI package ``mkl``: ``libmkl_rt``, LP64 CBLAS; also with its
OpenMP block time set to 0, ``mkl-blocktime0``), BLIS (the PyPI package ``blis``: its typed API
``bli_?gemm``, found in the wheel's extension module), all called through ctypes, row-major,
beta = 0; and PyTorch's ``torch.mm(out=)`` (the MKL linked into its wheel).  Same thread count.

Each library runs in its own Python process (one BLAS pool per process: no contention between
libraries), and the processes are interleaved: every round starts one process per library, in
an order rotated from round to round, so that a drift of the machine's speed (other jobs on a
shared machine) hits every library alike.  A process checks every product against NumPy, then
times, for each d:

- ``NN``, ``NT``, ``TN``: the square products C = A B (forward), C = A Bᵀ and C = Aᵀ B (the
  backward sweep), best of ``--reps`` consecutive calls;
- ``step``: the six products of a depth-3 step in the step's order, back to back (P₂ = W₂ P₁,
  P₃ = W₃ P₂, S₂ = W₃ᵀ R, S₁ = W₂ᵀ S₂, G₃ = R P₂ᵀ, G₂ = S₂ P₁ᵀ), best of ``--reps``: the 6-GEMM
  floor of a wide step on that library.

The table gives the best over rounds (ms and GFLOP/s) and each library's ratio to the fastest
library for that column (1.00 = fastest).  Not a pytest benchmark.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
LAYOUTS = {"NN": (False, False), "NT": (False, True), "TN": (True, False)}
LIBRARIES = ("openblas-numpy", "openblas-bundled", "mkl", "mkl-blocktime0", "blis", "torch")


def _cblas(lib, name: str, ilp64: bool, dtype):
    """C = op(A) op(B) (row-major CBLAS ?gemm, beta = 0)."""
    f = getattr(lib, name)
    i = ctypes.c_int64 if ilp64 else ctypes.c_int
    s = ctypes.c_double if dtype == np.float64 else ctypes.c_float
    p = ctypes.c_void_p
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, s, p, i, p, i, s, p, i]
    f.restype = None

    def gemm(a, b, c, ta, tb):
        m, n = c.shape
        k = a.shape[0] if ta else a.shape[1]
        f(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 1.0,
          a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], 0.0, c.ctypes.data, n)
        return c
    return gemm


def _blis(lib, dtype):
    """BLIS's typed API: bli_?gemm(transa, transb, m, n, k, *alpha, A, rsa, csa, B, rsb, csb,
    *beta, C, rsc, csc), general strides (dim_t, inc_t: 64-bit); BLIS_TRANSPOSE = 0x08."""
    f = lib.bli_dgemm if dtype == np.float64 else lib.bli_sgemm
    i, p = ctypes.c_int64, ctypes.c_void_p
    f.argtypes = [ctypes.c_int, ctypes.c_int, i, i, i, p, p, i, i, p, i, i, p, p, i, i]
    f.restype = None
    one, zero = np.ones(1, dtype), np.zeros(1, dtype)

    def gemm(a, b, c, ta, tb):
        m, n = c.shape
        k = a.shape[0] if ta else a.shape[1]
        f(8 if ta else 0, 8 if tb else 0, m, n, k, one.ctypes.data, a.ctypes.data, a.shape[1], 1,
          b.ctypes.data, b.shape[1], 1, zero.ctypes.data, c.ctypes.data, n, 1)
        return c
    return gemm


def _openblas(path: str, suffix: str, what: str, threads: int, ch: str, dtype):
    """(description, gemm) of a scipy-openblas build (symbols scipy_..., suffix 64_ for ILP64)."""
    lib = ctypes.CDLL(path)
    getattr(lib, f"scipy_openblas_set_num_threads{suffix}")(threads)
    config, core = (getattr(lib, f"scipy_openblas_get_{n}{suffix}") for n in ("config", "corename"))
    config.restype = core.restype = ctypes.c_char_p
    desc = f"OpenBLAS {config().decode().split()[1]} ({what}, {core().decode()})"
    return desc, _cblas(lib, f"scipy_cblas_{ch}gemm{suffix}", suffix == "64_", dtype)


def load(name: str, threads: int, dtype):
    """(description, gemm) of one library, or None when it is not installed."""
    ch = "d" if dtype == np.float64 else "s"
    if name == "openblas-numpy":
        site = os.path.dirname(os.path.dirname(np.__file__))
        paths = glob.glob(os.path.join(site, "numpy.libs", "libscipy_openblas64_*.so"))
        return _openblas(paths[0], "64_", "NumPy's, ILP64", threads, ch, dtype) if paths else None
    if name == "openblas-bundled":
        try:
            import scipy_openblas32 as sob
        except ImportError:
            return None
        path = os.path.join(sob.get_lib_dir(), f"lib{sob.get_library()}.so")
        return _openblas(path, "", "bundled scipy-openblas32", threads, ch, dtype)
    if name.startswith("mkl"):
        paths = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
        if not paths:
            return None
        lib = ctypes.CDLL(paths[0])
        lib.MKL_Set_Num_Threads(threads)
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, 256)
        ver = buf.value.decode().split("Version")[-1].split("-Product")[0].strip()
        gemm = _cblas(lib, f"cblas_{ch}gemm", False, dtype)
        if name == "mkl-blocktime0":  # OpenMP threads sleep right after each call (no spinning)
            ctypes.CDLL(os.path.join(sys.prefix, "lib", "libiomp5.so")).kmp_set_blocktime(0)
            return f"MKL {ver} (libmkl_rt, LP64, OpenMP, kmp_set_blocktime(0))", gemm
        return f"MKL {ver} (libmkl_rt, LP64, OpenMP)", gemm
    if name == "blis":
        try:
            import blis.cy
        except ImportError:
            return None
        lib = ctypes.CDLL(blis.cy.__file__)
        lib.bli_thread_set_num_threads(ctypes.c_int64(threads))
        lib.bli_info_get_version_str.restype = ctypes.c_char_p
        from blis.about import __version__ as wheel
        return (f"BLIS {lib.bli_info_get_version_str().decode()} (PyPI blis {wheel})", _blis(lib, dtype))
    if name == "torch":  # PyTorch's CPU GEMM (its own MKL and OpenMP in the x86 wheels)
        try:
            import torch
        except ImportError:
            return None
        torch.set_num_threads(threads)
        info = torch.__config__.parallel_info()
        mkl = [ln for ln in info.splitlines() if "Math Kernel Library" in ln]
        ver = mkl[0].split("Version")[-1].split("-Product")[0].strip() if mkl else "?"

        def tgemm(a, b, c, ta, tb):
            x, y = torch.from_numpy(a), torch.from_numpy(b)
            torch.mm(x.T if ta else x, y.T if tb else y, out=torch.from_numpy(c))
            return c
        return f"PyTorch {torch.__version__} torch.mm(out=) (its MKL {ver})", tgemm
    raise ValueError(name)


def six_products(gemm, w1, w2, w3, r):
    """The six products of a depth-3 step in the step's order (P₂ = W₂ W₁, P₃ = W₃ P₂,
    S₂ = W₃ᵀ R, S₁ = W₂ᵀ S₂, G₃ = R P₂ᵀ, G₂ = S₂ W₁ᵀ) into buffers allocated here."""
    p2, p3, s2, s1, g3, g2 = (np.empty_like(w1) for _ in range(6))

    def step():
        gemm(w2, w1, p2, False, False)
        gemm(w3, p2, p3, False, False)
        gemm(w3, r, s2, True, False)
        gemm(w2, s2, s1, True, False)
        gemm(r, p2, g3, False, True)
        gemm(s2, w1, g2, False, True)
    return step


def worker(name: str, dims: list[int], threads: int, reps: int, dtype) -> dict:
    """One library in this process: check, then time every column for every d."""
    found = load(name, threads, dtype)
    if found is None:
        return {"name": name, "missing": True}
    desc, gemm = found
    out = {"name": name, "desc": desc, "times": {}}
    tol = 1e-12 if dtype == np.float64 else 1e-4
    for d in dims:
        rng = np.random.default_rng(d)
        w = [rng.standard_normal((d, d)).astype(dtype) for _ in range(4)]
        a, b = w[0], w[1]
        c = np.empty((d, d), dtype)
        for lay, (ta, tb) in LAYOUTS.items():
            expect = (a.T if ta else a) @ (b.T if tb else b)
            c.fill(np.nan)  # beta = 0 must not read C
            gemm(a, b, c, ta, tb)
            err = np.abs(c - expect).max() / np.abs(expect).max()
            assert err < tol, (name, lay, d, err)
        time.sleep(0.3)  # NumPy's own pool (the reference products) goes to sleep
        t = {}
        for lay, (ta, tb) in LAYOUTS.items():
            best = np.inf
            for _ in range(reps + 1):  # the first call warms up
                t0 = time.perf_counter()
                gemm(a, b, c, ta, tb)
                best = min(best, time.perf_counter() - t0)
            t[lay] = best
        step = six_products(gemm, *w)
        best = np.inf
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - t0)
        t["step"] = best
        out["times"][str(d)] = t
    return out


def pattern(name: str, d: int, threads: int, rounds: int, dtype) -> dict:
    """The interleaved pattern of issue 16 with this library as the core's: rounds of two
    steps (6 products each) on the library then one NumPy GEMM ``a @ a``, against the same
    calls not interleaved (all steps, then all NumPy GEMMs); ms per round, best of 3 blocks."""
    found = load(name, threads, dtype)
    if found is None:
        return {"name": name, "missing": True}
    desc, gemm = found
    import threadpoolctl

    threadpoolctl.threadpool_limits(threads, user_api="blas")  # NumPy's pool: same threads
    rng = np.random.default_rng(d)
    w1, w2, w3, r, a = (rng.standard_normal((d, d)).astype(dtype) for _ in range(5))
    c = np.empty((d, d), dtype)
    step = six_products(gemm, w1, w2, w3, r)

    def interleaved():
        for _ in range(rounds):
            step()
            step()
            np.matmul(a, a, out=c)

    def separated():
        for _ in range(rounds):
            step()
            step()
        for _ in range(rounds):
            np.matmul(a, a, out=c)

    best = {"interleaved": np.inf, "separated": np.inf}
    interleaved()  # warm up both pools
    for _ in range(3):
        for key, f in (("interleaved", interleaved), ("separated", separated)):
            time.sleep(0.3)
            t0 = time.perf_counter()
            f()
            best[key] = min(best[key], (time.perf_counter() - t0) / rounds)
    return {"name": name, "desc": desc, "times": {str(d): best}}


def run(libs, dims, threads, rounds, reps, dtype_name, pat=False) -> dict:
    """Interleaved rounds of one process per library; {name: result with the best times}."""
    results: dict = {}
    for rnd in range(rounds):
        order = list(libs[rnd % len(libs):]) + list(libs[:rnd % len(libs)])
        for name in order:
            cmd = [sys.executable, __file__, "--worker", name, "--threads", str(threads), "--reps",
                   str(reps), "--dtype", dtype_name, "--d", *map(str, dims)] + (["--pattern"] if pat else [])
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                            env=env).stdout.strip().splitlines()[-1])
            if got.get("missing"):
                results.setdefault(name, got)
                continue
            prev = results.get(name)
            if prev is None or prev.get("missing"):
                results[name] = got
                continue
            for d, t in got["times"].items():
                for col, v in t.items():
                    prev["times"][d][col] = min(prev["times"][d][col], v)
    return results


def table(results: dict, dims, threads, rounds, dtype_name, pat=False) -> str:
    present = {k: v for k, v in results.items() if not v.get("missing")}
    cols = ["interleaved", "separated"] if pat else list(LAYOUTS) + ["step"]
    lines = [f"{dtype_name}, {threads} threads, one process per library, best of {rounds} interleaved "
             f"rounds; ms (GFLOP/s) and / fastest library"]
    for name, v in results.items():
        lines.append(f"  {name}: {'not installed' if v.get('missing') else v['desc']}")
    for d in dims:
        ds = str(d)
        fastest = {c: min(v["times"][ds][c] for v in present.values()) for c in cols}
        lines.append(f"d = {d}")
        lines.append(f"  {'library':<18}" + "".join(f"{c:>24}" for c in cols))
        for name, v in present.items():
            cells = ""
            for c in cols:
                t = v["times"][ds][c]
                fl = 2.0 * d ** 3 * (13 if pat else 6 if c == "step" else 1)
                cells += f"{t * 1e3:9.2f} ({fl / t / 1e9:5.1f}) {t / fastest[c]:5.2f}x"
            if pat:
                cells += f"   interleaved/separated {v['times'][ds]['interleaved'] / v['times'][ds]['separated']:.3f}"
            lines.append(f"  {name:<18}{cells}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, nargs="+", default=[1000, 300])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--pattern", action="store_true",
                    help="the interleaved pattern instead: per round two 6-product steps on the library, "
                         "then one NumPy GEMM, against the same calls not interleaved (ms per round)")
    ap.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    dtype = np.dtype(args.dtype).type
    if args.worker:
        if args.pattern:
            print(json.dumps(pattern(args.worker, args.d[0], args.threads, args.reps, dtype)))
        else:
            print(json.dumps(worker(args.worker, args.d, args.threads, args.reps, dtype)))
        return
    if args.pattern:
        args.d = args.d[:1]
    res = run(args.libraries, args.d, args.threads, args.rounds, args.reps, args.dtype, args.pattern)
    print(table(res, args.d, args.threads, args.rounds, args.dtype, args.pattern))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
