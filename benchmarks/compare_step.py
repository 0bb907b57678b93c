"""The wide training step against PyTorch and against the 6-GEMM floor of every BLAS (issue 16).

    python benchmarks/compare_step.py [--d 1000 300] [--threads 2] [--rounds 3] [--reps 5]

One GD step of a depth-3 factorization network (mean reduction, lr = 1e-4 d², from orthogonal
weights, float64), each implementation in its own Python process with the same thread count,
the processes interleaved round by round (order rotated) so that a drifting machine hits
every implementation alike:

- ``deeplinear``: the core trainer's step (``Trainer64.run(1)``: forward, loss, backward with
  the update fused into the gradient GEMMs), on the BLAS the core binds by default;
- ``torch``: the same step hand-written in PyTorch (CPU, its own BLAS: MKL in the x86 wheels),
  every product into a preallocated buffer (``torch.mm(out=)``) and the updates fused
  (``addmm_(…, alpha=-lr)``), the loss as a dot product; skipped when torch is not installed;
- ``6 GEMMs <library>``: the six d × d products of the step back to back on each BLAS of
  ``compare_blas.py`` (ctypes, no element-wise work): the floor of a step on that library.

Both steps are checked against NumPy's step (benchlib.NumpyStep) from the same weights before
timing.  The table gives the best time per step over rounds, and ratios to the fastest floor
and to PyTorch's step.  Goals (issue 16): deeplinear ≤ PyTorch, and ≤ 1.05 × the fastest floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEPTH = 3
LR_TIMES_C = 1e-4


def _setup(d: int):
    """(weights, target, c, lr, the NumPy step's weights and loss after one step)."""
    import deeplinear as dl

    prob = dl.problems.factorization(d, 10, seed=0)
    w0 = dl.DeepLinearNetwork(DEPTH, d, init="orthogonal", init_scale=1.0, seed=0).weights
    lr = LR_TIMES_C * d * d
    from benchlib import NumpyStep

    ref = NumpyStep(w0, prob.target, None, prob.c, lr)
    loss = ref.step()
    return prob, w0, lr, ref.W, loss


def _check(got_w, got_loss, ref_w, ref_loss, what):
    err = max(np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(got_w, ref_w))
    lerr = abs(got_loss - ref_loss) / abs(ref_loss)
    assert err < 1e-12 and lerr < 1e-12, (what, err, lerr)


def _time(step, reps: int) -> float:
    step()  # warm-up
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def worker_deeplinear(d: int, threads: int, reps: int) -> dict:
    import deeplinear as dl
    from deeplinear import _core

    dl.set_num_threads(threads)
    prob, w0, lr, ref_w, ref_loss = _setup(d)
    net = dl.DeepLinearNetwork.from_weights(w0)
    a, b = prob._core_args(net.dtype)
    tr = _core.Trainer64(net._core, prob.kind, a, b, prob.reduction, dl.GD(lr=lr)._config(), 1, -1.0, 0)
    assert tr.run(1) == "running"
    _check(net.weights, tr.last_loss, ref_w, ref_loss, "deeplinear")
    t = _time(lambda: tr.run(1), reps)
    assert tr.status == "running" and np.isfinite(tr.last_loss)
    info = dl.build_info()
    return {"desc": f"deeplinear {dl.__version__} ({info.get('blas_source')}: {info.get('blas_core')}, "
                    f"{os.path.basename(info.get('blas_library', ''))})", "time": t}


def worker_torch(d: int, threads: int, reps: int) -> dict:
    try:
        import torch
    except ImportError:
        return {"missing": True}
    torch.set_num_threads(threads)
    prob, w0, lr, ref_w, ref_loss = _setup(d)
    W = [torch.from_numpy(np.array(w)) for w in w0]
    phi = torch.from_numpy(np.array(prob.target))
    c = prob.c
    P2, P3, S1, S2 = (torch.empty(d, d, dtype=torch.float64) for _ in range(4))
    R = P3  # the residual overwrites the output
    W1, W2, W3 = W

    def step() -> float:
        torch.mm(W2, W1, out=P2)
        torch.mm(W3, P2, out=P3)
        R.sub_(phi)
        flat = R.view(-1)
        loss = 0.5 * c * float(torch.dot(flat, flat))
        R.mul_(c)
        torch.mm(W3.T, R, out=S2)
        W3.addmm_(R, P2.T, alpha=-lr)
        torch.mm(W2.T, S2, out=S1)
        W2.addmm_(S2, W1.T, alpha=-lr)
        W1.add_(S1, alpha=-lr)
        return loss

    loss = step()
    _check([w.numpy() for w in W], loss, ref_w, ref_loss, "torch")
    t = _time(step, reps)
    assert all(bool(torch.isfinite(w).all()) for w in W)
    blas = "MKL" if torch.backends.mkl.is_available() else "its BLAS"
    return {"desc": f"PyTorch {torch.__version__} hand-written step ({blas}, mm(out=), addmm_)", "time": t}


def worker_gemms(lib: str, d: int, threads: int, reps: int) -> dict:
    import compare_blas

    got = compare_blas.worker(lib, [d], threads, reps, np.float64)
    if got.get("missing"):
        return {"missing": True}
    return {"desc": f"6 GEMMs, {got['desc']}", "time": got["times"][str(d)]["step"]}


def impls(with_libs) -> list[str]:
    return ["deeplinear", "torch"] + [f"gemms:{lib}" for lib in with_libs]


def run_worker(name: str, d: int, threads: int, reps: int) -> dict:
    if name == "deeplinear":
        return worker_deeplinear(d, threads, reps)
    if name == "torch":
        return worker_torch(d, threads, reps)
    return worker_gemms(name.split(":", 1)[1], d, threads, reps)


def main() -> None:
    import compare_blas

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, nargs="+", default=[1000, 300])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--libraries", nargs="*", default=["openblas-numpy", "openblas-bundled", "mkl", "blis"],
                    choices=compare_blas.LIBRARIES)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.d[0], args.threads, args.reps)))
        return
    names = impls(args.libraries)
    best: dict = {}
    for d in args.d:
        for rnd in range(args.rounds):
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--d", str(d),
                       "--threads", str(args.threads), "--reps", str(args.reps)]
                env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                prev = best.get((d, name))
                if prev is None or (not got.get("missing") and got["time"] < prev["time"]):
                    best[(d, name)] = got
    print(f"wide GD step, factorization, L = {DEPTH}, float64, {args.threads} threads, one process per "
          f"implementation, best of {args.rounds} interleaved rounds x {args.reps} steps")
    for d in args.d:
        rows = {n: best[(d, n)] for n in names if not best[(d, n)].get("missing")}
        floors = {n: v["time"] for n, v in rows.items() if n.startswith("gemms:")}
        floor = min(floors.values()) if floors else np.nan
        torch_t = rows["torch"]["time"] if "torch" in rows else np.nan
        flops = 6 * 2.0 * d ** 3
        print(f"d = {d}  (floor = 6 GEMMs of the fastest BLAS: {floor * 1e3:.2f} ms)")
        print(f"  {'implementation':<28}{'ms':>9}{'GFLOP/s':>9}{'/ floor':>9}{'/ torch':>9}  what")
        for n, v in rows.items():
            t = v["time"]
            print(f"  {n:<28}{t * 1e3:9.2f}{flops / t / 1e9:9.1f}{t / floor:9.3f}{t / torch_t:9.3f}  {v['desc']}")
        for n in names:
            if best[(d, n)].get("missing"):
                print(f"  {n:<28} not installed")


if __name__ == "__main__":
    main()
