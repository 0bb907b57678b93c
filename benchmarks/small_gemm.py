"""The small-GEMM kernel (cpp/include/deeplinear/gemm.hpp) against the BLAS path, in C++.

Builds benchmarks/small_gemm.cpp with the core's flags (-O3 -march=native, Eigen from
cmeel-eigen, products routed to BLAS through blas_dispatch.hpp), binds it to the OpenBLAS the
installed deeplinear runs on (NumPy's) and runs it single-threaded:

    python benchmarks/small_gemm.py            # check, then time: one CSV line per case
    python benchmarks/small_gemm.py --check    # correctness only (every m, k, n in 1..65)
    python benchmarks/small_gemm.py --sanitize # the check built with ASan + UBSan

Timed: square m = k = n from 2 to 32 for A B, Aᵀ B and A Bᵀ (beta = 0), m = k from 21 to 64
with n = 20, and the compressed step's three kinds of product at 2r = 20 (forward A B,
backward sweep Aᵀ B, fused update W <- W - lr S Pᵀ: A Bᵀ with beta = 1).  Each number is the
best of 15-40 batches, the kernel and BLAS alternating, so the ratio holds on a loaded machine.
The ``use_small_kernel`` rule in gemm.hpp is chosen from these numbers.  Not run by pytest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _eigen_include() -> str:
    prefix = subprocess.run([sys.executable, "-m", "cmeel", "cmake"], capture_output=True, text=True,
                            check=True).stdout.strip()
    return str(Path(prefix) / "include" / "eigen3")


def build(out: Path, sanitize: bool = False) -> Path:
    exe = out / ("small_gemm_asan" if sanitize else "small_gemm")
    blas_defs = [f"-D{p}{f}_=deeplinear_{p}{f}_" for p in "sd"
                 for f in ("gemm", "gemv", "trmm", "trmv", "trsm", "symm", "symv", "syrk", "axpy")]
    # -fno-sanitize-recover: a UBSan report ends the run with a non-zero status (CI fails on it)
    flags = (["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
             if sanitize else ["-O3"])
    cmd = [os.environ.get("CXX", "g++"), "-std=c++17", *flags, "-march=native", "-fopenmp-simd",
           "-DEIGEN_USE_BLAS", "-DDEEPLINEAR_HAVE_OPENBLAS", *blas_defs,
           f"-I{ROOT / 'cpp' / 'include'}", f"-I{_eigen_include()}",
           str(ROOT / "benchmarks" / "small_gemm.cpp"), "-o", str(exe), "-ldl"]
    subprocess.run(cmd, check=True)
    return exe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="correctness only")
    ap.add_argument("--sanitize", action="store_true", help="the check, built with ASan + UBSan")
    ap.add_argument("--reps", type=int, default=2000, help="calls per batch at 20 x 20 x 20")
    args = ap.parse_args()
    from deeplinear import _core

    lib = _core.build_info()["blas_library"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp), sanitize=args.sanitize)
        rc = subprocess.run([str(exe), lib, "check"], env=env).returncode
        if rc or args.check or args.sanitize:
            return rc
        return subprocess.run([str(exe), lib, "time", str(args.reps)], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
