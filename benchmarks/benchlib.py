"""Shared machinery of the benchmarks: the NumPy reference step, cached problems and initial
weights, the registry of measured times (read by conftest.py's end-of-run ratio table) and the
BLAS kernel report.

Every benchmark first checks correctness (deeplinear against the same algorithm in NumPy),
then times.  With ``--benchmark-disable`` (how CI runs them) the timed function runs once and
only the correctness checks matter; no timing is ever asserted unless
``DEEPLINEAR_BENCH_ASSERT=1`` is set (see README.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import deeplinear as dl
from deeplinear import _core

DEPTH = 3
RANK = 10
OBSERVED = 0.2  # completion: fraction of observed entries
INIT_SCALE = 1.0  # orthogonal init W_l = O_l: the first update is a visible fraction of W
# Learning rate with lr * c = 1e-4 (c = 1/d² for the mean reduction): the update of the checked
# step is ~0.3% of ‖W‖ at d = 1000 and training stays finite for thousands of timed steps.
LR_TIMES_C = 1e-4

ASSERT_TARGETS = os.environ.get("DEEPLINEAR_BENCH_ASSERT", "") not in ("", "0")
TARGET_STEP_OVER_FLOOR = 1.10  # wide step <= 1.10 x (6 x fastest GEMM)
TARGET_STEP_OVER_NUMPY = 1.00  # strictly faster than the NumPy step

# Correctness tolerances of one step, relative Frobenius errors, per dtype:
# (weights after the step, the update ΔW = W_after − W_before, the loss).
TOL = {
    np.dtype(np.float64): dict(weights=1e-12, update=1e-12, loss=1e-12),
    np.dtype(np.float32): dict(weights=1e-6, update=1e-4, loss=1e-4),
}

MATMUL = {np.dtype(np.float64): _core.matmul64, np.dtype(np.float32): _core.matmul32}
TRAINER = {np.dtype(np.float64): _core.Trainer64, np.dtype(np.float32): _core.Trainer32}


def gemm_flops(d: int) -> float:
    return 2.0 * d**3


def step_flops(d: int, depth: int = DEPTH) -> float:
    """Flops of the 3(L−1) GEMMs of one wide step (element-wise passes not counted)."""
    return 3 * (depth - 1) * gemm_flops(d)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- the NumPy reference ---------------------------------------------------------------------

class NumpyStep:
    """One GD step of a deep linear network in NumPy, same algorithm as the core (MATH.md §1):

    P_1 = W_1, P_l = W_l P_{l-1};  R = c M ⊙ (P_L − Φ);  S_L = R, S_{l-1} = W_lᵀ S_l;
    G_l = S_l P_{l-1}ᵀ (G_1 = S_1);  W_l −= lr G_l, layer L first (S_{l-1} is computed before
    W_l changes).  Every buffer is preallocated; ``step()`` returns the training loss at the
    weights before the update, ``(c/2)‖M ⊙ (P_L − Φ)‖²``, as the core does each step.
    """

    def __init__(self, weights, target, mask, c: float, lr: float) -> None:
        self.W = [np.array(w, order="C") for w in weights]
        dt = self.W[0].dtype
        self.target = np.ascontiguousarray(target, dtype=dt)
        self.mask = None if mask is None else np.ascontiguousarray(mask, dtype=dt)
        self.c = dt.type(c)
        self.lr = dt.type(lr)
        L = len(self.W)
        self.P = [None] + [None] + [np.empty_like(self.target) for _ in range(2, L + 1)]
        self.S = [None] + [np.empty_like(self.target) for _ in range(1, L + 1)]
        self.G = np.empty_like(self.W[0])

    def prefix(self, l: int) -> np.ndarray:
        return self.W[0] if l == 1 else self.P[l]

    def step(self) -> float:
        W, P, S, G = self.W, self.P, self.S, self.G
        L = len(W)
        for l in range(2, L + 1):
            np.matmul(W[l - 1], self.prefix(l - 1), out=P[l])
        R = S[L]
        np.subtract(self.prefix(L), self.target, out=R)
        if self.mask is not None:
            np.multiply(R, self.mask, out=R)
        loss = 0.5 * float(self.c) * float(np.vdot(R, R))
        R *= self.c
        for l in range(L, 0, -1):
            if l > 1:
                np.matmul(W[l - 1].T, S[l], out=S[l - 1])
                np.matmul(S[l], self.prefix(l - 1).T, out=G)
                g = G
            else:
                g = S[1]
            g *= self.lr
            W[l - 1] -= g
        return loss


# -- cached inputs ---------------------------------------------------------------------------

_PROBLEMS: dict = {}
_WEIGHTS: dict = {}


def problem(kind: str, d: int):
    key = (kind, d)
    if key not in _PROBLEMS:
        if kind == "factorization":
            _PROBLEMS[key] = dl.problems.factorization(d, RANK, seed=0)
        else:
            _PROBLEMS[key] = dl.problems.completion(d, RANK, OBSERVED, seed=0)
    return _PROBLEMS[key]


def initial_weights(d: int, dtype) -> list:
    key = (d, np.dtype(dtype))
    if key not in _WEIGHTS:
        net = dl.DeepLinearNetwork(DEPTH, d, init="orthogonal", init_scale=INIT_SCALE, seed=0,
                                   dtype=dtype)
        _WEIGHTS[key] = net.weights
    return _WEIGHTS[key]


@dataclass
class StepCase:
    """A deeplinear trainer and a NumPy stepper from the same weights, checked to agree on
    their first step (``check()``, done once, before any timing); both then keep stepping."""

    kind: str
    d: int
    dtype: np.dtype
    trainer: object = None
    network: object = None
    numpy: NumpyStep | None = None
    errors: dict = field(default_factory=dict)

    @property
    def lr(self) -> float:
        return LR_TIMES_C * self.d * self.d

    def check(self) -> dict:
        if self.errors:
            return self.errors
        prob = problem(self.kind, self.d)
        w0 = initial_weights(self.d, self.dtype)
        self.network = dl.DeepLinearNetwork.from_weights(w0)
        opt = dl.GD(lr=self.lr)
        a_, b_ = prob._core_args(self.network.dtype)
        self.trainer = TRAINER[self.dtype](self.network._writable_core(), prob.kind, a_, b_, prob.c,
                                           opt._config(), 1, -1.0, 0)
        assert self.trainer.run(1) == "running"
        w_dl = self.network.weights
        mask = getattr(prob, "mask", None)
        self.numpy = NumpyStep(w0, a_, mask, prob.c, self.lr)
        loss_np = self.numpy.step()
        w_np = self.numpy.W
        err = {
            "weights": max(rel(a, b) for a, b in zip(w_dl, w_np)),
            "update": max(rel(a - w, b - w) for a, b, w in zip(w_dl, w_np, w0)),
            "loss": abs(self.trainer.last_loss - loss_np) / abs(loss_np),
            "update_size": min(rel(b, w) for b, w in zip(w_np, w0)),
        }
        tol = TOL[self.dtype]
        msg = f"{self.kind} d={self.d} {self.dtype}: one step deeplinear vs NumPy: {err}"
        assert err["update_size"] > 1e-4, "update too small for a meaningful check: " + msg
        for k in ("weights", "update", "loss"):
            assert err[k] <= tol[k], msg
        self.errors = err
        return err

    def check_still_finite(self, steps_done: int) -> None:
        """After timing: the trainer really did every step (no early divergence stop)."""
        assert self.trainer.status == "running", self.trainer.status
        assert self.trainer.step == steps_done
        assert np.isfinite(self.trainer.last_loss)


_CASES: dict = {}


def step_case(kind: str, d: int, dtype) -> StepCase:
    key = (kind, d, np.dtype(dtype))
    if key not in _CASES:
        _CASES[key] = StepCase(kind, d, np.dtype(dtype))
    return _CASES[key]


# -- registry of timings and the ratio table ------------------------------------------------

@dataclass
class Timing:
    name: str
    best: float  # seconds per step / per GEMM, min over rounds
    median: float
    flops: float

    @property
    def gflops(self) -> float:
        return self.flops / self.best / 1e9


@dataclass
class MemoryCase:
    """Peak memory of one training run (test_bench_memory.py), in bytes."""
    name: str
    base: int  # RSS before the network existed
    extra: int  # peak RSS during training - base (weights included)
    floor: int  # what the algorithm must hold (see test_bench_memory.py)
    weights: int  # RSS added by creating the network
    fallbacks: int = 0  # incremental tracking: full SVDs instead of subspace iteration
    target: float = 1.5  # extra / floor

    @property
    def ratio(self) -> float:
        return self.extra / self.floor


@dataclass
class Interleaved:
    """Best times (seconds) of a GEMM and a step of each implementation, over the same rounds
    (test_bench_step.py::test_step_interleaved)."""
    kind: str
    dtype: np.dtype
    d: int
    best: dict  # "gemm core", "gemm numpy", "step deeplinear", "step numpy" -> seconds
    rounds: int

    def ratios(self, depth: int = DEPTH) -> dict:
        floor = 3 * (depth - 1) * min(self.best["gemm core"], self.best["gemm numpy"])
        return {"step/floor": self.best["step deeplinear"] / floor,
                "NumPy/floor": self.best["step numpy"] / floor,
                "deeplinear/NumPy": self.best["step deeplinear"] / self.best["step numpy"]}


class Registry:
    def __init__(self) -> None:
        self.gemm: dict = {}  # (impl, dtype, d) -> Timing
        self.step: dict = {}  # (impl, kind, dtype, d, steps_per_call) -> Timing
        self.memory: dict = {}  # case -> MemoryCase
        self.interleaved: dict = {}  # (kind, dtype, d) -> Interleaved

    def floor(self, dtype, d: int, depth: int = DEPTH) -> tuple[float, str] | None:
        """3(L−1) × the fastest d × d GEMM time measured in this run (min over implementations)."""
        found = [(t.best, impl) for (impl, dt, dd), t in self.gemm.items()
                 if dt == np.dtype(dtype) and dd == d]
        if not found:
            return None
        best, impl = min(found)
        return 3 * (depth - 1) * best, impl

    def ratios(self, kind: str, dtype, d: int, impl: str = "deeplinear", steps_per_call: int = 1) -> dict:
        out = {}
        me = self.step.get((impl, kind, np.dtype(dtype), d, steps_per_call))
        if me is None:
            return out
        fl = self.floor(dtype, d)
        if fl is not None:
            out["floor_ms"] = fl[0] * 1e3
            out["floor_from"] = fl[1]
            out["step_over_floor"] = me.best / fl[0]
        np_step = self.step.get(("numpy", kind, np.dtype(dtype), d, 1))
        if np_step is not None and impl != "numpy":
            out["step_over_numpy"] = me.best / np_step.best
        return out


REGISTRY = Registry()


def timing_from(benchmark, name: str, flops: float, per_call: int = 1) -> Timing | None:
    """The benchmark's min / median per call (divided by ``per_call``), or None when disabled."""
    if benchmark.disabled or benchmark.stats is None:
        return None
    st = benchmark.stats.stats
    t = Timing(name, st.min / per_call, st.median / per_call, flops)
    benchmark.extra_info.update({"best_ms": t.best * 1e3, "median_ms": t.median * 1e3,
                                 "gflops": t.gflops})
    return t


def measure_gemm_now(dtype, d: int, repeats: int = 5) -> None:
    """Fallback when a step benchmark runs without the GEMM benchmarks (e.g. ``-k step``):
    time both GEMMs here, best of ``repeats``, so that the floor is still from this run."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((d, d)).astype(dtype)
    b = rng.standard_normal((d, d)).astype(dtype)
    out = np.empty_like(a)
    impls: dict[str, Callable] = {"core": lambda: MATMUL[np.dtype(dtype)](a, b, out),
                                  "numpy": lambda: np.matmul(a, b, out=out)}
    for impl, f in impls.items():
        f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        REGISTRY.gemm[(impl + " (ad hoc)", np.dtype(dtype), d)] = Timing(
            f"gemm {impl} ad hoc", min(ts), float(np.median(ts)), gemm_flops(d))


# -- BLAS kernels ----------------------------------------------------------------------------

def kernel_info() -> dict:
    """Which BLAS ran: the core's (deeplinear.build_info(): the library bound at import, NumPy's
    own OpenBLAS when it can be shared) and every BLAS threadpoolctl finds loaded."""
    bi = dl.build_info()
    info = {
        "core": f"{bi['blas']} {bi['blas_core'] or ''} ({bi['blas_config'] or 'Eigen GEMM'}; "
                f"SIMD {bi['simd']}; openmp={bi['openmp']}; threads={dl.get_num_threads()})",
        "core_library": (f"{bi.get('blas_source')}: {bi.get('blas_library')} "
                         f"({bi.get('blas_int_bits')}-bit integers; {bi.get('blas_reason')})"),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                "DEEPLINEAR_BUNDLED_BLAS")},
    }
    try:
        import threadpoolctl
    except ImportError:
        info["numpy"] = "unknown (threadpoolctl not installed: pip install threadpoolctl)"
        return info
    core_lib = os.path.realpath(bi["blas_library"]) if bi.get("blas_library") else None
    libs = [lib for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]
    info["numpy"] = "; ".join(
        f"{lib['internal_api']} {lib.get('version')} {lib.get('architecture')} "
        f"({os.path.basename(lib['filepath'])}, threads={lib.get('num_threads')}"
        f"{', the core uses it' if core_lib and os.path.realpath(lib['filepath']) == core_lib else ''})"
        for lib in libs) or "no BLAS found by threadpoolctl"
    info["blas_pools"] = len(libs)
    return info


