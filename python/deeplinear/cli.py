"""Command line: ``deeplinear run [EXPERIMENT]`` and ``deeplinear info``.

``deeplinear run`` (= ``deeplinear run parsimony``) reproduces the paper's Figure 1, the law of
parsimony: it trains two deep matrix factorizations with orthogonal init while recording an
exact SVD of every layer, checks the predicted structure (bulk singular values = |ρ(t)|,
invariant subspaces) in a PASS/FAIL table, and writes the results and one figure per setting to
a fresh folder under ``results/``.  ``deeplinear run factorization`` trains a single width-100
factorization and prints a table of the singular values of layer 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class FactorizationExperiment:
    """A small deep matrix factorization with orthogonal init (the law of parsimony setting)."""

    d: int = 100
    rank: int = 5
    depth: int = 3
    init_scale: float = 1.0
    lr: float = 20.0
    steps: int = 5000
    reduction: str = "mean"
    seed: int = 0
    rows: int = 10  # lines of the printed table

    def quick_version(self) -> "FactorizationExperiment":
        return replace(self, steps=500)

    def run(self, out_dir: str, progress: bool = True) -> dict:
        import deeplinear as dl

        net = dl.DeepLinearNetwork(depth=self.depth, width=self.d, init="orthogonal",
                                   init_scale=self.init_scale, seed=self.seed)
        prob = dl.problems.factorization(self.d, self.rank, seed=self.seed, reduction=self.reduction)
        opt = dl.GD(lr=self.lr)
        k = min(3, self.rank)
        table_steps, table_sv = [], []

        def snapshot(step: int, net_: "dl.DeepLinearNetwork") -> None:
            s = np.linalg.svd(net_.weight(1), compute_uv=False)
            table_steps.append(step)
            table_sv.append(s)

        every = max(1, self.steps // self.rows)
        res = dl.train(net, prob, opt, steps=self.steps, progress=progress,
                       callback=snapshot, callback_every=every)
        losses = dict(zip(res.steps.tolist(), res.train_loss.tolist()))
        print(f"deep matrix factorization: d={self.d}, rank={self.rank}, depth={self.depth}, "
              f"eps={self.init_scale}, lr={self.lr}, {self.reduction} loss, GD")
        hdr = f"{'step':>7} {'loss':>11} " + " ".join(f"{'s' + str(i + 1):>8}" for i in range(k))
        hdr += f" {'bulk s(' + str(2 * self.rank + 1) + '..' + str(self.d) + ')':>24}"
        print(hdr)
        for step, s in zip(table_steps, table_sv):
            bulk = s[2 * self.rank:]
            lead = " ".join(f"{v:8.4f}" for v in s[:k])
            print(f"{step:7d} {losses.get(step, float('nan')):11.4e} {lead} "
                  f"{bulk.min():11.6f}..{bulk.max():.6f}")
        print(f"status: {res.status} after {res.n_steps} steps, {res.elapsed:.2f} s")
        res.meta["experiment"] = {"name": "factorization", **self.__dict__}
        os.makedirs(out_dir, exist_ok=True)
        res.save(os.path.join(out_dir, "result.npz"))
        res.save_json(os.path.join(out_dir, "result.json"))
        np.savez(os.path.join(out_dir, "singular_values_layer1.npz"),
                 steps=np.asarray(table_steps), singular_values=np.asarray(table_sv))
        print(f"wrote {out_dir}/result.npz, result.json, singular_values_layer1.npz")
        return res.summary()


from .experiments import Experiment  # noqa: E402
from .experiments.parsimony import ParsimonyExperiment  # noqa: E402

EXPERIMENTS = {"parsimony": ParsimonyExperiment, "factorization": FactorizationExperiment}
from .experiments_compression import EquivalenceExperiment, IterationTimeExperiment  # noqa: E402

EXPERIMENTS.update({"equivalence": EquivalenceExperiment, "iteration-time": IterationTimeExperiment})
DEFAULT_EXPERIMENT = "parsimony"

def _out_dir(base: str, name: str) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, f"{name}-{stamp}")
    i = 1
    while os.path.exists(path):
        path = os.path.join(base, f"{name}-{stamp}-{i}")
        i += 1
    return path


def main(argv: list[str | os.PathLike] | None = None) -> int:
    """Entry point of the ``deeplinear`` command (``argv`` default: ``sys.argv[1:]``); returns
    the exit status: 1 when a check of ``run parsimony`` fails, else 0."""
    parser = argparse.ArgumentParser(prog="deeplinear", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (default: %s)" % DEFAULT_EXPERIMENT)
    run.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT, choices=sorted(EXPERIMENTS),
                     help="parsimony: the paper's Figure 1 with checks (default); "
                          "factorization: one width-100 run")
    run.add_argument("--out", default="results", help="base folder of the results (default: results)")
    run.add_argument("--steps", type=int, default=None, help="override the step budget")
    run.add_argument("--seed", type=int, default=None, help="override the seed")
    run.add_argument("--quick", action="store_true", help="small step budgets (a smoke test)")
    run.add_argument("--threads", type=int, default=None,
                     help="threads of the core's matrix products for this run (default: 1 for "
                          "parsimony, the library's setting otherwise)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("info", help="print how the core was built (BLAS backend, SIMD, threads)")
    args = parser.parse_args(None if argv is None else [os.fspath(a) for a in argv])

    import deeplinear as dl

    if args.command == "info":
        print(json.dumps({"version": dl.__version__, "threads": dl.get_num_threads(),
                          **dl.build_info()}, indent=1))
        return 0
    if args.steps is not None and args.steps < 1:
        parser.error("--steps: must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads: must be >= 1")
    if issubclass(EXPERIMENTS[args.experiment], Experiment):
        exp = EXPERIMENTS[args.experiment]()
        if args.quick:
            exp = exp.quick()
        if args.steps is not None:
            exp = exp.replace(steps_a=args.steps, steps_b=args.steps)
        if args.seed is not None:
            exp = exp.replace(seed=args.seed)
        res = exp.run(_out_dir(os.fspath(args.out), args.experiment),
                      progress=not args.no_progress, threads=args.threads)
        return 0 if res.passed else 1
    exp = EXPERIMENTS[args.experiment]()
    if args.quick:
        exp = exp.quick_version()
    overrides = {k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None}
    if overrides:
        exp = replace(exp, **overrides)
    out_dir = _out_dir(os.fspath(args.out), args.experiment)
    before = dl.get_num_threads()
    threads = args.threads if args.threads is not None else getattr(exp, "threads", None)
    if threads is not None:
        dl.set_num_threads(threads)
    try:
        summary = exp.run(out_dir, progress=not args.no_progress)
    finally:  # main() may be called in-process (tests): leave the setting as it was
        dl.set_num_threads(before)
    return 0 if summary.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
