"""Exact compression, the headline claim (MATH.md §3): d = 1000, r = 10, L = 3, ε = 1e-3, mean
loss, orthogonal init, GD with η = 250 (0.91× the stability edge 2/(c L σ₁^{4/3}) ≈ 275 for this
target; the paper's η = 0.1 never leaves the plateau, MATH.md §6): wall time to reach loss 1e-10.

1. ``dl.compress(net, problem)`` of the untrained wide network + ``dl.train(comp, …, tol=1e-10)``
   (the wide network's construction, a d × d Haar init, is not part of it);
2. the reduced network (``dl.reduced_network`` with the overlap ``K = Rᵀ Oᵀ C`` of the same init:
   the same trajectory, no d × d matrix);
3. the wide network: 1e-10 takes ~18k steps × ~0.12 s, too long for a benchmark, so one wide
   step is timed and the time to 1e-10 is **extrapolated** as per-step × the steps the compressed
   run needed (exact: the compressed run is the wide run).
4. the reduced step at d = 10³ … 10⁶: its cost must not depend on d.

Correctness first (also with ``--benchmark-disable``, how CI runs it, in well under 30 s): the
compressed losses equal the wide network's over the first 20 steps (relative 1e-10), the reduced
network's equal the compressed ones, and both reach 1e-10.  Targets (reported; asserted with
``DEEPLINEAR_BENCH_ASSERT=1``): compression + training to 1e-10 ≤ 0.05 s; reduced per-step time
flat from d = 10³ to 10⁶ (max/min ≤ 1.5).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

import deeplinear as dl
from benchlib import ASSERT_TARGETS
from deeplinear.experiments import stability_edge, stable_lr
from deeplinear.parsimony import range_bases
from deeplinear.training import _CORE_TRAINER

D, RANK, DEPTH, EPS, LR, TOL, SEED = 1000, 10, 3, 1e-3, 250.0, 1e-10, 0
BUDGET = 30_000  # step budget of the runs to TOL (seed 0 needs 17871)
CHECK_STEPS = 20  # wide vs compressed, step by step
LOSS_RTOL = 1e-10
REDUCED_WIDTHS = (1_000, 10_000, 100_000, 1_000_000)
REDUCED_CHUNK = 5_000  # steps per timed dl.train call of the reduced network
TARGET_SECONDS = 0.05
TARGET_FLAT = 1.5  # reduced per-step time, max/min over d

RESULTS: dict = {}
_SETUP: dict = {}


def setup() -> dict:
    """The problem, an untrained wide network (kept untouched: compress's fast path), the
    target's SVD factors and the overlap K of the init, computed once."""
    if _SETUP:
        return _SETUP
    t0 = time.perf_counter()
    prob = dl.problems.factorization(D, RANK, seed=SEED)
    net = dl.DeepLinearNetwork(DEPTH, D, init="orthogonal", init_scale=EPS, seed=SEED)
    # Φ = C diag(S) Rᵀ (rank r: exact from the range finder's bases)
    c0, r0, _ = range_bases(prob.target, RANK)
    u, s, vt = np.linalg.svd(c0.T @ prob.target @ r0)
    C, S, R = c0 @ u, s, r0 @ vt.T
    x = C
    for w in reversed(net.initial_weights()):  # Oᵀ C = O_1ᵀ ⋯ O_Lᵀ C
        x = w.T @ x / EPS
    _SETUP.update(prob=prob, net=net, S=S, K=R.T @ x, setup_seconds=time.perf_counter() - t0,
                  edge=stability_edge(float(S[0]), prob.c, DEPTH))
    assert net._at_init()
    return _SETUP


def compress_and_train():
    st = setup()
    t0 = time.perf_counter()
    comp = dl.compress(st["net"], st["prob"])
    t1 = time.perf_counter()
    res = dl.train(comp, st["prob"], dl.GD(lr=LR), steps=BUDGET, tol=TOL, progress=False)
    return res, t1 - t0, time.perf_counter() - t1


def reduced_to_tol(width: int = D):
    st = setup()
    comp, rp = dl.reduced_network(width, DEPTH, st["S"], init_scale=EPS, overlap=st["K"])
    return dl.train(comp, rp, dl.GD(lr=LR), steps=BUDGET, tol=TOL, progress=False)


def _clocked(fn):
    """fn wrapped to record its own wall time per call (the only time there is with
    --benchmark-disable, where the benchmark runs it once)."""
    seen: list[float] = []

    def wrapped():
        t0 = time.perf_counter()
        out = fn()
        seen.append(time.perf_counter() - t0)
        return out

    return wrapped, seen


def _timing(benchmark):
    """(best, median) seconds per call, or None with --benchmark-disable."""
    if benchmark.disabled or benchmark.stats is None:
        return None
    st = benchmark.stats.stats
    return st.min, st.median


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if tr is None or not RESULTS:
        return
    with capman.global_and_fixture_disabled() if capman else _nothing():
        tr.ensure_newline()
        for line in summary_lines():
            tr.write_line(line)


@contextlib.contextmanager
def _nothing():
    yield


def summary_lines() -> list[str]:
    st = _SETUP
    r = RESULTS
    out = ["", "=" * 24 + " exact compression: time to loss 1e-10 " + "=" * 24]
    if st:
        out.append(f"d={D}, r={RANK}, L={DEPTH}, eps={EPS:g}, mean loss, GD lr={LR:g} "
                   f"({LR / st['edge']:.2f} x stability edge {st['edge']:.0f}); "
                   f"core threads={dl.get_num_threads()}")
    if "check" in r:
        c = r["check"]
        out.append(f"correctness: wide vs compressed, {CHECK_STEPS} steps: max rel. loss diff "
                   f"{c['wide_vs_compressed']:.1e} (<= {LOSS_RTOL:g}); reduced vs compressed, "
                   f"{CHECK_STEPS} steps: {c['reduced_vs_compressed']:.1e}; steps to {TOL:g}: "
                   f"compressed {c['steps']}, reduced {c['reduced_steps']}")
    timed = "best of rounds" if r.get("timed") else "single run (--benchmark-disable: not a timing)"
    out.append(f"times ({timed}):")
    n = r.get("check", {}).get("steps")
    if "compressed" in r:
        c = r["compressed"]
        verdict = ("met" if c["total"] <= TARGET_SECONDS else "NOT met") if r.get("timed") else "no verdict"
        out.append(f"  compress + train compressed to {TOL:g}: {c['total'] * 1e3:8.1f} ms  "
                   f"(compress {c['compress'] * 1e3:.1f} ms + train {c['train'] * 1e3:.1f} ms, "
                   f"{c['train'] / max(n or 1, 1) * 1e6:.2f} us/step)  target <= {TARGET_SECONDS * 1e3:.0f} ms: {verdict}")
    if "reduced" in r:
        out.append(f"  reduced network to {TOL:g} (same overlap):  {r['reduced']['total'] * 1e3:8.1f} ms")
    if "wide_step" in r and n:
        w = r["wide_step"]
        out.append(f"  wide, EXTRAPOLATED: {w * 1e3:.1f} ms/step (timed) x {n} steps = {w * n:8.1f} s "
                   f"(not run to {TOL:g})")
        if "compressed" in r:
            out.append(f"  ratios: wide / (compress + train) = {w * n / r['compressed']['total']:.0f}x; "
                       f"wide step / compressed step = {w / (r['compressed']['train'] / n):.0f}x"
                       + (f"; wide / reduced = {w * n / r['reduced']['total']:.0f}x" if "reduced" in r else ""))
    red = r.get("reduced_step", {})
    if red:
        vals = [red[d] for d in sorted(red)]
        ratio = max(vals) / min(vals)
        verdict = ("met" if ratio <= TARGET_FLAT else "NOT met") if r.get("timed") else "no verdict"
        out.append("  reduced step: " + ", ".join(f"d={d:.0e} {red[d] * 1e6:.2f} us" for d in sorted(red))
                   + f"; max/min {ratio:.2f} (target flat, <= {TARGET_FLAT}): {verdict}")
    return out


# -- correctness --------------------------------------------------------------------------------

def test_correctness():
    """Compressed = wide step by step (20 steps, relative 1e-10); reduced (same overlap) =
    compressed; the compressed and reduced runs reach 1e-10 in the budget."""
    st = setup()
    prob, net = st["prob"], st["net"]
    comp = dl.compress(net, prob)
    assert comp.exact and comp.rho == EPS
    assert net._at_init(), "compress must not touch the network"
    rc = dl.train(comp, prob, dl.GD(lr=LR), steps=BUDGET, tol=TOL, progress=False)
    assert rc.status == "converged", (rc.status, rc.final_loss)
    wide = net.copy()  # the same (untrained) weights; `net` stays untouched for the timings
    rw = dl.train(wide, prob, dl.GD(lr=LR), steps=CHECK_STEPS, progress=False)
    rel_w = np.abs(rw.train_loss - rc.train_loss[:CHECK_STEPS + 1]) / rc.train_loss[:CHECK_STEPS + 1]
    assert rel_w.max() <= LOSS_RTOL, rel_w
    # and the weights: the lift of the compressed network after CHECK_STEPS steps
    c20 = dl.compress(net, prob)
    dl.train(c20, prob, dl.GD(lr=LR), steps=CHECK_STEPS, progress=False)
    lift_err = max(np.linalg.norm(a - b) / np.linalg.norm(b)
                   for a, b in zip(c20.lift().weights, wide.weights))
    assert lift_err <= 1e-12, lift_err
    rr = reduced_to_tol()
    assert rr.status == "converged", (rr.status, rr.final_loss)
    k = min(len(rr.train_loss), CHECK_STEPS + 1)
    rel_r = np.abs(rr.train_loss[:k] - rc.train_loss[:k]) / rc.train_loss[:k]
    assert rel_r.max() <= LOSS_RTOL, rel_r
    assert abs(rr.n_steps - rc.n_steps) <= max(2, rc.n_steps // 1000), (rr.n_steps, rc.n_steps)
    RESULTS["check"] = {"wide_vs_compressed": float(rel_w.max()), "reduced_vs_compressed": float(rel_r.max()),
                        "lift": float(lift_err), "steps": rc.n_steps, "reduced_steps": rr.n_steps}
    RESULTS["wide_net"] = wide


# -- timings ------------------------------------------------------------------------------------

def test_compress_and_train(benchmark):
    """(1) compression + training the compressed network to 1e-10."""
    setup()
    benchmark.group = "compression: time to loss 1e-10"
    runs = []

    def run():
        out = compress_and_train()
        runs.append(out)
        return out[0]

    res = benchmark.pedantic(run, rounds=7, iterations=1, warmup_rounds=1)
    assert res.status == "converged"
    t = _timing(benchmark)
    best = min(runs, key=lambda o: o[1] + o[2])
    RESULTS["timed"] = t is not None
    RESULTS["compressed"] = {"total": t[0] if t else best[1] + best[2], "compress": best[1], "train": best[2]}
    benchmark.extra_info.update({"steps": res.n_steps, **RESULTS["compressed"]})
    if ASSERT_TARGETS and t:
        assert t[0] <= TARGET_SECONDS, f"compression + training took {t[0]:.3f} s > {TARGET_SECONDS} s"


def test_reduced_to_tol(benchmark):
    """(2) the reduced network (same overlap K) to 1e-10."""
    setup()
    benchmark.group = "compression: time to loss 1e-10"
    fn, seen = _clocked(reduced_to_tol)
    res = benchmark.pedantic(fn, rounds=7, iterations=1, warmup_rounds=1)
    assert res.status == "converged"
    t = _timing(benchmark)
    RESULTS["reduced"] = {"total": t[0] if t else min(seen)}


def test_wide_step(benchmark):
    """(3) one wide step (d = 1000), for the extrapolated wide time to 1e-10."""
    st = setup()
    wide = RESULTS.get("wide_net") or st["net"].copy()
    prob = st["prob"]
    a, b = prob._core_args(wide.dtype)
    trainer = _CORE_TRAINER[wide.dtype](wide._writable_core(), prob.kind, a, b, prob.c,
                                        dl.GD(lr=LR)._config(), 1, -1.0, 0)
    benchmark.group = "compression: wide step (extrapolated)"
    fn, seen = _clocked(lambda: trainer.run(1))
    status = benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    assert status == "running" and np.isfinite(trainer.last_loss)
    t = _timing(benchmark)
    RESULTS["wide_step"] = t[0] if t else min(seen)


@pytest.mark.parametrize("width", REDUCED_WIDTHS, ids=[f"d{w:.0e}" for w in REDUCED_WIDTHS])
def test_reduced_step(benchmark, width):
    """(4) the reduced step at d = 10³ … 10⁶ (a dl.train call of 5000 steps / 5000; the target's
    spectrum scales with d like Φ = A Bᵀ/√r's, the step size stays 0.9× the edge)."""
    st = setup()
    spectrum = st["S"] * (width / D)
    lr = stable_lr(float(spectrum[0]), 1.0 / width ** 2, DEPTH)
    comp, rp = dl.reduced_network(width, DEPTH, spectrum, init_scale=EPS, seed=SEED)
    opt = dl.GD(lr=lr)
    benchmark.group = "compression: reduced step vs d"

    def chunk():
        return dl.train(comp, rp, opt, steps=REDUCED_CHUNK, progress=False)

    fn, seen = _clocked(chunk)
    res = benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    assert res.status == "max_steps" and np.isfinite(res.final_loss)
    t = _timing(benchmark)
    per_step = (t[0] if t else min(seen)) / REDUCED_CHUNK
    RESULTS.setdefault("reduced_step", {})[width] = per_step
    benchmark.extra_info["us_per_step"] = per_step * 1e6
    red = RESULTS["reduced_step"]
    if ASSERT_TARGETS and t and len(red) == len(REDUCED_WIDTHS):
        assert max(red.values()) / min(red.values()) <= TARGET_FLAT, red
