"""Per-step time of a compressed network's training (the headline run of issue 14).

d = 1000, r = 10, L = 3, eps = 1e-3, GD with lr = 250 to loss 1e-10 (17,871 steps of the 2r = 20
blocks; test_bench_compression.py's run): ``dl.compress`` of the untrained wide network (from
explicit weights, as test_bench_train_calls.py's headline), then
``dl.train(comp, prob, dl.GD(lr=250), 30000, tol=1e-10)``; the train call's time over its steps
is the per-step time (wall clock, and the training thread's CPU time, which the scheduling of
a loaded machine does not inflate).  Best of ``--rounds`` runs, each on a fresh compression.

    python benchmarks/compressed_step.py
    python benchmarks/compressed_step.py --against /path/to/other/site   # interleaved A/B

With ``--against`` the same measurement runs alternately in this interpreter's deeplinear and
in the one importable from that directory (PYTHONPATH), process by process, and the ratios of
the two are printed: on a loaded machine only the ratio of interleaved runs means something.
``--loop SECONDS`` just trains (for ``perf record``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

D, RANK, DEPTH, EPS, LR, TOL, BUDGET, SEED = 1000, 10, 3, 1e-3, 250.0, 1e-10, 30_000, 0


def measure(rounds: int) -> dict:
    import numpy as np

    import deeplinear as dl

    prob = dl.problems.factorization(D, RANK, seed=SEED)
    # explicit weights (no seed: compress's general path), as test_bench_train_calls.py's headline
    net = dl.DeepLinearNetwork.from_weights(
        dl.DeepLinearNetwork(DEPTH, D, init="orthogonal", init_scale=EPS, seed=SEED).weights)
    best = {"step_us": np.inf, "step_cpu_us": np.inf, "compress_ms": np.inf, "train_ms": np.inf,
            "headline_ms": np.inf}
    for _ in range(rounds):
        t0 = time.perf_counter()
        comp = dl.compress(net, prob)
        t1, c1 = time.perf_counter(), time.thread_time()
        res = dl.train(comp, prob, dl.GD(lr=LR), BUDGET, tol=TOL, progress=False)
        t2, c2 = time.perf_counter(), time.thread_time()
        assert res.status == "converged", res.status
        best["compress_ms"] = min(best["compress_ms"], (t1 - t0) * 1e3)
        best["train_ms"] = min(best["train_ms"], (t2 - t1) * 1e3)
        best["headline_ms"] = min(best["headline_ms"], (t2 - t0) * 1e3)
        best["step_us"] = min(best["step_us"], (t2 - t1) / res.n_steps * 1e6)
        # CPU time of this thread (the training loop runs in it): what a loaded machine's
        # scheduling does not add to
        best["step_cpu_us"] = min(best["step_cpu_us"], (c2 - c1) / res.n_steps * 1e6)
    best["steps"] = int(res.n_steps)
    best["final_loss"] = float(res.final_loss)
    best["module"] = dl.__file__
    return best


def loop(seconds: float) -> None:
    import deeplinear as dl

    prob = dl.problems.factorization(D, RANK, seed=SEED)
    net = dl.DeepLinearNetwork(DEPTH, D, init="orthogonal", init_scale=EPS, seed=SEED)
    comp0 = dl.compress(net, prob)
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        comp = dl.compress(net, prob) if comp0 is None else comp0
        comp0 = None
        dl.train(comp, prob, dl.GD(lr=LR), BUDGET, tol=TOL, progress=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--against", help="directory holding the other deeplinear (PYTHONPATH)")
    ap.add_argument("--pairs", type=int, default=4, help="interleaved process pairs with --against")
    ap.add_argument("--python", default=None, help="interpreter for --against (default: this one)")
    ap.add_argument("--loop", type=float, default=0.0, help="train for this many seconds (profiling)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loop:
        loop(args.loop)
        return 0
    if not args.against:
        out = measure(args.rounds)
        print(json.dumps(out) if args.json else out)
        return 0
    runs: dict = {"this": [], "other": []}
    cmd = [sys.argv[0], "--rounds", str(args.rounds), "--json"]
    for _ in range(args.pairs):
        for which in ("other", "this"):
            env = dict(os.environ)
            exe = sys.executable
            if which == "other":
                env["PYTHONPATH"] = args.against
                exe = args.python or sys.executable
            got = subprocess.run([exe, *cmd], env=env, capture_output=True, text=True, check=True).stdout
            runs[which].append(json.loads(got.strip().splitlines()[-1]))
    for which in ("other", "this"):
        r = runs[which]
        print(f"{which:5s} {r[0]['module']}: steps {r[0]['steps']}, final loss {r[0]['final_loss']:.3e}")
        print("      step us  " + " ".join(f"{x['step_us']:.2f}" for x in r))
        print("      step cpu " + " ".join(f"{x['step_cpu_us']:.2f}" for x in r))
        print("      train ms " + " ".join(f"{x['train_ms']:.1f}" for x in r))
        print("      compr ms " + " ".join(f"{x['compress_ms']:.1f}" for x in r))
        print("      headl ms " + " ".join(f"{x['headline_ms']:.1f}" for x in r))
    for key in ("step_us", "step_cpu_us"):
        ratios = [t[key] / o[key] for t, o in zip(runs["this"], runs["other"])]
        print(f"{key} ratio this/other, pair by pair: " + " ".join(f"{x:.3f}" for x in ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
