"""Compressed matrix completion at scale (issue 12): d = 10⁵, r = 5, |Ω| = 10⁷ (0.1% observed).

Run as a script (``python benchmarks/scale_completion.py --d 100000 --nnz 10000000``; the
defaults are the issue's size) or through ``test_bench_completion.py`` (tiny in CI, the full
size with ``DEEPLINEAR_BENCH_SLOW=1``).  Prints the time of each phase (problem build, spectral
init, training), the time per step, the step count and time to a relative test RMSE below the
target, the final RMSE and the peak RSS; the last line is the same as JSON.

The target ``Φ = A Bᵀ/√(r d)`` (Gaussian A, B: entries of variance 1/d, σ_i ≈ √(d/r)) is never
formed: the observed and the test entries are drawn as distinct random positions and their
values computed row by row.  The step is :meth:`deeplinear.CompressedCompletion.stable_lr`
(the rule of MATH.md §4's scaling: the Gauss–Newton curvature of the mean loss on Ω at the
initial factors), GD with heavy-ball momentum.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

import deeplinear as dl


def draw_problem(d: int, r: int, nnz: int, n_test: int, seed: int) -> dl.Completion:
    """Observed and test entries (disjoint, uniformly random positions) of ``Φ = A Bᵀ/√(r d)``."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, r))
    B = rng.standard_normal((d, r))
    scale = 1.0 / np.sqrt(r * d)
    n = nnz + n_test
    keys = np.unique(rng.integers(0, d * d, size=int(n * 1.001) + 16))
    while len(keys) < n:  # (a collision surplus is almost always there at once)
        keys = np.unique(np.concatenate([keys, rng.integers(0, d * d, size=n - len(keys) + 16)]))
    pick = rng.permutation(len(keys))
    test_keys = np.sort(keys[pick[nnz:n]])
    keys = np.sort(keys[pick[:nnz]])
    del pick

    def values(k):
        out = np.empty(len(k))
        step = 1 << 20
        for i in range(0, len(k), step):
            rows, cols = np.divmod(k[i:i + step], d)
            out[i:i + step] = np.einsum("ij,ij->i", A[rows], B[cols]) * scale
        return out

    vals = values(keys)
    rows, cols = np.divmod(keys, d)
    del keys
    trows, tcols = np.divmod(test_keys, d)
    return dl.Completion.from_entries(rows, cols, vals, (d, d), test=(trows, tcols, values(test_keys)))


def run(d: int = 100_000, nnz: int = 10_000_000, rank: int = 5, depth: int = 3, alpha: float = 0.1,
        momentum: float = 0.9, steps: int = 300, target: float = 1e-3, n_test: int = 100_000,
        power_steps: int | None = None, record_every: int = 10, seed: int = 0, verbose: bool = True) -> dict:
    """One run; returns the measurements (see the module docstring)."""
    t0 = time.perf_counter()
    prob = draw_problem(d, rank, nnz, n_test, seed)
    t_problem = time.perf_counter() - t0
    t0 = time.perf_counter()
    kw = {} if power_steps is None else {"power_steps": power_steps}
    model = dl.CompressedCompletion(prob, rank=rank, depth=depth, init="spectral", outer_lr_scale=alpha, seed=seed,
                                    **kw)
    lr = model.stable_lr(prob, momentum=momentum)
    t_init = time.perf_counter() - t0
    res = dl.train(model, prob, dl.GD(lr=lr, momentum=momentum), steps, record_every=record_every, progress=False)
    per_step = res.elapsed / max(res.n_steps, 1)
    rmse = np.asarray(res.test_rmse)
    hit = np.nonzero(rmse < target)[0]
    first = int(res.steps[hit[0]]) if len(hit) else None
    out = {"d": d, "nnz": prob.n_observed, "rank": rank, "depth": depth, "alpha": alpha, "momentum": momentum,
           "lr": lr, "threads": dl.get_num_threads(), "problem_s": t_problem, "init_s": t_init,
           "train_s": res.elapsed, "steps": res.n_steps, "step_ms": per_step * 1e3,
           "init_test_rmse": float(rmse[0]), "final_test_rmse": float(rmse[-1]), "target": target,
           "steps_to_target": first,
           "time_to_target_s": (t_init + first * per_step) if first is not None else None,
           "total_s": t_problem + t_init + res.elapsed, "status": res.status, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if verbose:
        print(f"d={d} r={rank} L={depth} |Omega|={out['nnz']} ({out['nnz'] / d / d:.3%}), {out['threads']} threads")
        print(f"  problem build {t_problem:.1f} s, spectral init {t_init:.1f} s (test RMSE {out['init_test_rmse']:.3e}),"
              f" lr {lr:.4g} (stable_lr, momentum {momentum}), alpha {alpha}")
        print(f"  {res.n_steps} steps in {res.elapsed:.1f} s: {out['step_ms']:.0f} ms/step, status {res.status}")
        print(f"  test RMSE {out['final_test_rmse']:.3e}; below {target:g} after "
              f"{first if first is not None else '-'} steps, "
              f"{out['time_to_target_s'] if first is not None else float('nan'):.1f} s from the init's start")
        print(f"  total {out['total_s']:.1f} s (problem, init, {res.n_steps} steps); peak RSS {out['peak_rss_mb']:.0f} MB")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=100_000)
    p.add_argument("--nnz", type=int, default=10_000_000)
    p.add_argument("--rank", type=int, default=5)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--target", type=float, default=1e-3)
    p.add_argument("--power-steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads is not None:
        dl.set_num_threads(a.threads)
    out = run(a.d, a.nnz, a.rank, a.depth, a.alpha, a.momentum, a.steps, a.target, power_steps=a.power_steps,
              seed=a.seed)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
