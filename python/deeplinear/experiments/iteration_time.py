"""Time per GD step, wide vs compressed vs reduced (the paper's ``comp_iter_time``):
``deeplinear run iteration-time``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np

import deeplinear as dl

from ..plotting import plot_iteration_time
from ._base import Check, ConfigError, Experiment, ExperimentResult, param, register
from ._common import fmt, rel_diff, stable_lr, target_spectrum

LOSS_TOL = 1e-10  # wide vs compressed loss after the same steps (the plateau: no round-off growth)
SPEEDUP_MIN = 1.0  # compressed per-step time below the wide one at the largest timed width


@register
@dataclass(frozen=True)
class IterationTimeExperiment(Experiment):
    """Time per GD step, wide vs compressed vs reduced, as the width d grows (the paper's
    ``comp_iter_time``).  r = 10, L = 3, ε = 1e-3, mean loss, orthogonal init, target
    ``dl.problems.factorization(d, r, seed)``, step size 0.9× the stability edge.

    * wide: ``dl.train(net, …, steps=k)`` with ``k`` steps worth about ``chunk_seconds``,
      timed by the result's ``elapsed`` (the training loop only), divided by k; best of
      ``repeats`` calls after one warm-up call, for ``wide_widths``.  A width whose predicted
      time (from the previous width's step × (d'/d)³) exceeds ``wide_budget`` seconds is skipped
      and reported as such, before its network is made (a d × d orthogonal init alone is
      O(d³): 160 s at d = 4000 on a loaded machine); the reduced network covers large d.
    * compressed: ``dl.compress(net, problem)`` of the same (untrained) network, then
      ``dl.train(comp, …, steps=small_steps)``: the whole call divided by the steps, best of
      ``repeats``.
    * reduced: ``dl.reduced_network(d, L, σ(Φ), …)`` (overlap sampled in O(r³), no d × d matrix;
      the spectrum of Φ computed in O(d r²)), timed as the compressed one, up to d = 10⁶.

    Checks (not on times alone: those depend on the machine and its load): every timed run
    kept training (none diverged or converged while timed); after the wide network's timed
    steps, a compressed copy of it trained for the same number of steps has the same loss
    (relative difference ≤ 1e-10); and the compressed step is faster than the wide one at the
    largest wide width timed (a ratio of ~1e2–1e4, so the threshold of 1 holds on any machine).
    Files: ``iteration_time.npz`` / ``.json`` and ``iteration_time.png`` (with matplotlib).
    """

    name = "iteration-time"
    description = "time per GD step: wide vs compressed vs reduced network as the width grows"
    # One core thread (``--threads`` or ``run(threads=...)`` for more): comparable times, and
    # threaded OpenBLAS slows down ~10x whenever another process competes for the cores
    # (measured on a loaded 2-core machine: 68 ms per wide step at d = 100 with two threads).
    threads = 1

    rank: int = param(10, "rank r of the target", low=1)
    depth: int = param(3, "number of layers L", low=1)
    init_scale: float = param(1e-3, "ε of the orthogonal init", low=0.0, low_open=True)
    reduction: Literal["mean", "sum"] = param("mean", "loss reduction: mean (c = 1/d²) or sum (c = 1)")
    wide_widths: tuple[int, ...] = param((100, 200, 500, 1000, 2000, 4000), "widths of the wide network (each >= 2r, at least one)")
    reduced_widths: tuple[int, ...] = param((100, 1000, 10_000, 100_000, 1_000_000), "widths of the reduced network (each >= 2r)")
    steps: Optional[int] = param(None, "timed wide steps per call (None: about chunk_seconds worth, up to 50)", low=1)
    chunk_seconds: float = param(0.2, "target duration of one timed wide call", low=0.0)
    repeats: int = param(3, "timed calls per width (the best counts)", low=1)
    small_steps: int = param(20_000, "steps per timed dl.train call, compressed / reduced", low=1)
    wide_budget: float = param(90.0, "seconds allowed for the timed wide steps of one width", low=0.0)
    seed: int = param(0, "seed of the target and the init", low=0)

    def quick(self) -> "IterationTimeExperiment":
        return replace(self, wide_widths=(100, 200, 500), reduced_widths=(100, 1000, 10_000, 100_000),
                       small_steps=5000)

    def validate(self) -> None:
        # the compressed and the reduced networks have 2r × 2r blocks: every width must hold them
        if not self.wide_widths:
            raise ConfigError("wide_widths: must not be empty (the speed-up check compares at the "
                              "largest wide width)")
        for field_name in ("wide_widths", "reduced_widths"):
            bad = [d for d in getattr(self, field_name) if d < 2 * self.rank]
            if bad:
                raise ConfigError(f"{field_name}: every width must be >= 2 * rank = {2 * self.rank}, "
                                  f"got {', '.join(map(str, bad))}")

    def compute(self, res: ExperimentResult, progress: bool) -> None:
        res.log(f"time per GD step, wide vs compressed vs reduced (the paper's comp_iter_time): "
                f"deeplinear {dl.__version__}, {dl.get_num_threads()} threads")
        res.log(f"r={self.rank}, L={self.depth}, eps={self.init_scale:g}, {self.reduction} loss, "
                f"orthogonal init, lr = 0.9 x stability edge, seed {self.seed}")
        rows: dict[int, dict] = {}
        stopped: list[str] = []  # timed runs that did not keep training
        equal_err = 0.0          # wide vs compressed loss after the timed steps
        prev = None  # (d, seconds per wide step)
        for d in self.wide_widths:
            row = rows.setdefault(d, {"d": d})
            predicted = None if prev is None else prev[1] * (d / prev[0]) ** 3
            n_first = self.steps or 1
            if predicted is not None and predicted * n_first * (self.repeats + 1) > self.wide_budget:
                # skipped before the d × d network is even made (its init alone is O(d³))
                row["wide_s"] = row["compressed_s"] = float("nan")
                row["wide_skipped"] = (f"predicted {predicted:.1f} s/step x {n_first * (self.repeats + 1)} "
                                       f"steps > budget {self.wide_budget:g} s")
                res.log(f"d={d:>8}: wide and compressed skipped ({row['wide_skipped']}; the reduced "
                        f"network covers large d)")
                continue
            prob = dl.problems.factorization(d, self.rank, seed=self.seed, reduction=self.reduction)
            lr = stable_lr(float(target_spectrum(d, self.rank, self.seed)[0]), prob.c, self.depth)
            t0 = time.perf_counter()
            net = dl.DeepLinearNetwork(self.depth, d, init="orthogonal", init_scale=self.init_scale,
                                       seed=self.seed)
            row["init_s"] = time.perf_counter() - t0
            # compressed (before the wide network trains: compress is then cheap)
            t0 = time.perf_counter()
            comp = dl.compress(net, prob)
            row["compress_s"] = time.perf_counter() - t0
            twin = dl.compress(net, prob)  # follows the wide network's timed steps
            row["compressed_s"] = self._time_small(comp, prob, lr, stopped, f"compressed d={d}")
            gd = dl.GD(lr=lr)
            warm = dl.train(net, prob, gd, steps=n_first, record_every=n_first, progress=False)
            wide_steps = warm.n_steps
            per = warm.elapsed / max(warm.n_steps, 1)
            k = self.steps or int(min(50, max(1, math.ceil(self.chunk_seconds / max(per, 1e-7)))))
            best = []
            for _ in range(self.repeats):
                r = dl.train(net, prob, gd, steps=k, record_every=k, progress=False)
                wide_steps += r.n_steps
                if r.status != "max_steps":
                    stopped.append(f"wide d={d}: {r.status}")
                    break
                best.append(r.elapsed / k)
            row["wide_s"] = min(best) if best else float("nan")
            row["wide_median_s"] = float(np.median(best)) if best else float("nan")
            row["wide_steps_timed"] = k
            rt = dl.train(twin, prob, gd, steps=wide_steps, record_every=wide_steps, progress=False)
            equal_err = max(equal_err, float(rel_diff(r.train_loss[-1], rt.train_loss[-1])))
            if best:
                prev = (d, min(best))
            self._log_row(res, row)
            del net, comp, twin, prob
        for d in self.reduced_widths:
            row = rows.setdefault(d, {"d": d})
            t0 = time.perf_counter()
            sig = target_spectrum(d, self.rank, self.seed)
            lr = stable_lr(float(sig[0]), 1.0 / d ** 2 if self.reduction == "mean" else 1.0, self.depth)
            comp, rprob = dl.reduced_network(d, self.depth, sig, init_scale=self.init_scale,
                                             seed=self.seed, reduction=self.reduction)
            row["reduced_setup_s"] = time.perf_counter() - t0
            row["reduced_s"] = self._time_small(comp, rprob, lr, stopped, f"reduced d={d}")
            self._log_row(res, row, reduced=True)

        ds = sorted(rows)
        table = [rows[d] for d in ds]
        col = lambda k: np.array([r.get(k, np.nan) for r in table], dtype=float)  # noqa: E731
        res.log("")
        res.log(f"{'d':>9} {'wide ms/step':>13} {'compressed us/step':>19} {'reduced us/step':>16} "
                f"{'wide/compressed':>16} {'init s':>8} {'compress ms':>12}")
        for r in table:
            w, c, rd = r.get("wide_s", np.nan), r.get("compressed_s", np.nan), r.get("reduced_s", np.nan)
            ratio = w / c if np.isfinite(w) and np.isfinite(c) else np.nan
            res.log(f"{r['d']:>9} {fmt(w * 1e3, 13, '.3f')} {fmt(c * 1e6, 19, '.2f')} "
                    f"{fmt(rd * 1e6, 16, '.2f')} {fmt(ratio, 16, '.0f')} {fmt(r.get('init_s', np.nan), 8, '.2f')} "
                    f"{fmt(r.get('compress_s', np.nan) * 1e3, 12, '.1f')}")
        red = col("reduced_s")
        red = red[np.isfinite(red)]
        flat = float(red.max() / red.min()) if red.size else float("nan")
        if red.size:
            res.log(f"reduced per-step time, max/min over d = {min(self.reduced_widths)}.."
                    f"{max(self.reduced_widths)}: {flat:.2f} (flat: independent of d)")
        skipped = [r["d"] for r in table if "wide_skipped" in r]
        if skipped:
            res.log(f"wide skipped at d = {skipped} (time budget {self.wide_budget:g} s per width; "
                    f"raise wide_budget to include them)")
        timed = [r for r in table if np.isfinite(r.get("wide_s", np.nan))]
        speedup = timed[-1]["wide_s"] / timed[-1]["compressed_s"] if timed else float("nan")
        res.check(
            Check.at_most("timed runs that stopped training (diverged / converged)", len(stopped), 0,
                          note="; ".join(stopped)),
            Check.at_most("wide vs compressed loss after the timed steps (relative)", equal_err, LOSS_TOL),
            Check.at_least(f"speed-up compressed vs wide at d = {timed[-1]['d'] if timed else '-'}",
                           speedup, SPEEDUP_MIN))
        res.metric("reduced_max_over_min", flat)
        res.metric("speedup_largest_wide", speedup)
        res.save_arrays("iteration_time", {
            "d": np.array(ds), "wide_s": col("wide_s"), "compressed_s": col("compressed_s"),
            "reduced_s": col("reduced_s"), "init_s": col("init_s"), "compress_s": col("compress_s")},
            info={"rows": table, "reduced_max_over_min": flat, "wide_skipped": skipped})
        res.figure("iteration_time", plot_iteration_time, d=np.array(ds), wide=col("wide_s"),
                   compressed=col("compressed_s"), reduced=col("reduced_s"),
                   title=f"Time per GD step (r={self.rank}, L={self.depth}, "
                         f"{dl.get_num_threads()} threads)")

    def _time_small(self, comp, problem, lr: float, stopped: list[str], what: str) -> float:
        """Seconds per step of ``dl.train(comp, …, steps=n)`` (whole call / n), best of repeats.
        Each call continues the same run (GD: no optimizer state; ρ carried)."""
        best = np.inf
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            r = dl.train(comp, problem, dl.GD(lr=lr), steps=self.small_steps, progress=False)
            dt = time.perf_counter() - t0
            if r.status != "max_steps":
                stopped.append(f"{what}: {r.status}")
                return float("nan")
            best = min(best, dt / self.small_steps)
        return float(best)

    @staticmethod
    def _log_row(res: ExperimentResult, row: dict, reduced: bool = False) -> None:
        d = row["d"]
        if reduced:
            res.log(f"d={d:>8}: reduced {fmt(row['reduced_s'] * 1e6, 0, '.2f')} us/step "
                    f"(setup {row['reduced_setup_s'] * 1e3:.1f} ms)")
            return
        res.log(f"d={d:>8}: wide {fmt(row.get('wide_s', np.nan) * 1e3, 0, '.3f')} ms/step, compressed "
                f"{fmt(row['compressed_s'] * 1e6, 0, '.2f')} us/step (init {row['init_s']:.2f} s, compress "
                f"{row['compress_s'] * 1e3:.1f} ms)")
