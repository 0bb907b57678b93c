"""Peak memory of training: d = 1000, L = 3 factorization (r = 10), 50 steps, with tracking.

Target (issue "Memory"): the peak RSS that training adds stays within 1.5× of the floor.
Memory is deterministic enough to assert always, also with ``--benchmark-disable``.

Measurement.  Each case runs in a fresh interpreter (``sys.executable -c``):

1. warm-up: both BLAS libraries (the core's OpenBLAS and NumPy's, which the invariant basis
   uses) multiply d × d matrices once, so that their per-thread buffers are allocated and
   touched, and the same ``dl.train`` call (same optimizer and tracking mode) runs on a small
   problem, so that every module and code path is loaded; then ``malloc_trim(0)``;
2. the problem (its target Φ is input data: in the baseline, not counted);
3. baseline = VmRSS (``/proc/self/status``), **before** the network is created;
4. the network ``DeepLinearNetwork(depth=3, width=1000, init_scale=1.0, seed=0)``; then
   ``malloc_trim(0)`` and a reset of the peak (``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0),
   so that the temporaries of the orthogonal init do not count, its weights do;
5. ``dl.train(net, prob, GD(lr=100), steps=50, track=dl.Tracking(..., every=10))`` (mean reduction:
   lr · c = 1e-4, stable), then peak = VmHWM.

extra = peak − baseline: everything training holds at its peak, weights included.

Floor (bytes; d² float64 entries per square layer, s = 8 bytes), what the algorithm of
``cpp/include/deeplinear/network.hpp`` must hold at once:

    floor = s·d²·[ L            weights W_1..W_L
                 + k_opt·L      optimizer state: k_opt = 0 plain GD, 1 heavy-ball trace
                 + (L − 1)      prefix products P_2..P_L (P_1 = W_1 needs no buffer)
                 + L ]          backward sweep S_1..S_L (S_L = the residual R)
          + tracking storage

No gradient buffer is counted: plain GD and heavy-ball fold their update into the gradient
GEMM (W_l or the trace accumulates −lr·S_l P_{l−1}ᵀ directly), and ∇W_1 = S_1 is a sweep
buffer.  Tracking storage (float64): the reference bases U_l, V_l (L · 2 · d · 2r), the
incremental warm starts (L · 2 · d · k) and the records (singular values and angles).
The problem's target (d², part of the problem) and BLAS buffers are outside both extra and
floor.  For L = 3: floor = 8 d² (plain GD) or 11 d² (momentum) plus ~0.1 d² of tracking.

Reported per case (``-s`` prints the lines; a table at the end of the run): baseline, extra,
floor and extra / floor.

Measured (d² = 8 MB units; extra / floor): plain GD 8.0 d² (1.00); GD + structured tracking
11.3 d² (1.39); momentum + structured 14.3 d² (1.28); GD + incremental 11.9 d² (1.44).  Beyond
the floor, a structured or incremental run holds ~3.2 d²: the initial weights its invariant
basis is computed from (L d², regenerated from the seed and kept by the network, because the
trainer has touched the network when the tracking is set up; if they were not regenerated,
about as much stays as freed d × d copies of the tracking setup that the C allocator keeps),
and ~0.3 d² of small arrays and allocator slack.  Incremental tracking adds its per-record
Krylov basis (a few d × 40 blocks, ~0.6 d² with the Ritz vectors); it no longer runs an exact
SVD at its first record (Eigen's BDCSVD of a column-major copy of a layer, ~12 d² at its peak:
2.7× the floor), only at a fallback, and this run has none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from benchlib import REGISTRY, MemoryCase

D, RANK, DEPTH = 1000, 10, 3
STEPS, TRACK_EVERY = 50, 10
LR = 100.0  # mean reduction (c = 1/d²): lr * c = 1e-4
MOMENTUM = 0.9
TARGET = 1.5

# case id -> (momentum, track); incremental tracks the top k = 2r triplets
CASES = {
    "gd": (0.0, None),
    "gd-incremental": (0.0, "incremental"),
    "gd-structured": (0.0, "structured"),
    "momentum-structured": (MOMENTUM, "structured"),
}
# Known to miss the target: such a case xfails while over the target (every other check still
# applies) and fails once it meets it: then remove it from here.
KNOWN_OVER: dict = {}

_CHILD = textwrap.dedent(r"""
    import ctypes, gc, json, sys
    cfg = json.loads(sys.argv[1])
    import numpy as np
    import deeplinear as dl
    from deeplinear import _core

    def status():
        out = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(val.split()[0]) * 1024
        return out

    try:
        _trim = ctypes.CDLL(None).malloc_trim  # glibc: return freed heap pages to the OS
    except (OSError, AttributeError):
        _trim = None

    def trim():
        gc.collect()
        if _trim is not None:
            _trim(0)

    d, L, r, steps = cfg["d"], cfg["depth"], cfg["rank"], cfg["steps"]
    opt = dl.GD(lr=cfg["lr"], momentum=cfg["momentum"])
    track = cfg["track"]
    kw = {} if track is None else {"track": dl.Tracking(track, every=cfg["track_every"],
                                                        k=2 * r if track == "incremental" else None)}

    # 1. warm-up: BLAS buffers of both libraries at full size, then the same call, small
    a = np.full((d, d), 0.5)
    c = np.empty((d, d))
    _core.matmul64(a, a, c)
    np.matmul(a, a, out=c)
    np.matmul(a, a[:, : 2 * r])
    del a, c
    small_kw = dict(kw)
    if track == "incremental":
        small_kw["track"] = dl.Tracking(track, every=cfg["track_every"], k=4)
    dl.train(dl.DeepLinearNetwork(depth=L, width=40, init_scale=1.0, seed=1),
             dl.problems.factorization(40, 2, seed=1), opt, steps=3, progress=False, **small_kw)
    trim()

    # 2.-4. problem (not counted), baseline, network (counted), reset of the peak
    prob = dl.problems.factorization(d, r, seed=0)
    trim()
    base = status()["VmRSS"]
    net = dl.DeepLinearNetwork(depth=L, width=d, init_scale=1.0, seed=0)
    trim()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = status()

    # 5. training
    res = dl.train(net, prob, opt, steps=steps, progress=False, **kw)
    peak = status()["VmHWM"]
    t = res.tracking or {}
    print(json.dumps({
        "base": base, "after_net": reset["VmRSS"], "hwm_after_reset": reset["VmHWM"],
        "peak": peak, "status": res.status, "n_steps": res.n_steps,
        "loss": [float(res.train_loss[0]), float(res.train_loss[-1])],
        "records": int(len(t.get("steps", []))),
        "n_sv": int(t["singular_values"].shape[-1]) if t else 0,
        "fallbacks": int(t.get("fallbacks", 0)),
    }))
""")


def floor_bytes(momentum: float, track: str | None, records: int, n_sv: int) -> dict:
    """The floor of the module docstring, in bytes, by part."""
    s, d, L, r2 = 8, D, DEPTH, 2 * RANK
    parts = {
        "weights": L * d * d * s,
        "optimizer": (L if momentum else 0) * d * d * s,
        "prefix": (L - 1) * d * d * s,
        "sweep": L * d * d * s,
        "tracking": 0,
    }
    if track is not None:
        bases = L * 2 * d * r2
        warm = L * 2 * d * r2 if track == "incremental" else 0  # k = 2r
        recs = records * (L * (n_sv + 2 * r2) + (L - 1) * r2)
        parts["tracking"] = 8 * (bases + warm + recs)
    return parts


def _run_child(momentum: float, track: str | None) -> dict:
    cfg = {"d": D, "depth": DEPTH, "rank": RANK, "steps": STEPS, "lr": LR, "momentum": momentum,
           "track": track, "track_every": TRACK_EVERY}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cfg)], capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, f"measuring process failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")
@pytest.mark.parametrize("case", list(CASES))
def test_peak_rss_within_floor(case):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("cannot reset the peak RSS: /proc/self/clear_refs is not writable")
    momentum, track = CASES[case]
    m = _run_child(momentum, track)
    mib = 2.0 ** 20
    # the reset worked: the peak restarted from the current RSS (Linux >= 4.0)
    assert m["hwm_after_reset"] <= m["after_net"] + 4 * mib, m
    assert m["status"] == "max_steps" and m["n_steps"] == STEPS, m
    assert m["loss"][1] < m["loss"][0], m  # it trained
    parts = floor_bytes(momentum, track, m["records"], m["n_sv"])
    floor = sum(parts.values())
    extra = m["peak"] - m["base"]
    ratio = extra / floor
    d2 = D * D * 8
    REGISTRY.memory[case] = MemoryCase(case, base=m["base"], extra=extra, floor=floor,
                                       weights=m["after_net"] - m["base"], fallbacks=m["fallbacks"],
                                       target=TARGET)
    print(f"\n  memory {case}: baseline {m['base'] / mib:.0f} MiB, extra {extra / mib:.1f} MiB "
          f"= {extra / d2:.2f} d², floor {floor / mib:.1f} MiB = {floor / d2:.2f} d² "
          f"({', '.join(f'{k} {v / d2:.2f}' for k, v in parts.items())}), "
          f"extra / floor = {ratio:.3f}; tracking fallbacks {m['fallbacks']}")
    verdict = (f"{case}: peak RSS of training is {ratio:.3f} x the floor "
               f"({extra / d2:.2f} d² vs {floor / d2:.2f} d²), target {TARGET}")
    if case in KNOWN_OVER:
        assert ratio > TARGET, verdict + f"; met now: remove {case!r} from KNOWN_OVER"
        pytest.xfail(verdict + "; known: " + KNOWN_OVER[case])
    assert ratio <= TARGET, verdict
