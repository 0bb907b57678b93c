"""Runs that survive faults: checkpoints across SIGKILL (also of tracked runs), Ctrl-C, threads,
memory refusal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import deeplinear as dl

SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    import deeplinear as dl

    def build(track=None):
        if track is None:
            net = dl.DeepLinearNetwork(depth=3, width=24, init_scale=0.5, seed=3)
            prob = dl.problems.completion(24, 3, 0.5, seed=4)
            opt = dl.Adam(lr=3e-3, weight_decay=1e-4)
            return net, prob, opt
        # tracked runs: a factorization with orthogonal init under momentum ("structured" is
        # exact there); incremental: top 2r = 4 triplets, warm-started, with random directions
        net = dl.DeepLinearNetwork(depth=3, width=16, init_scale=0.3, seed=5)
        prob = dl.problems.factorization(16, 2, seed=6)
        return net, prob, dl.GD(lr=5.0, momentum=0.5)

    def tracking(track):
        if track is None:
            return {}
        if track == "structured":
            return {"track": dl.Tracking(track, every=7, k=3, verify_every=3)}
        return {"track": dl.Tracking(track, every=7)}

    if __name__ == "__main__":
        mode, path = sys.argv[1], sys.argv[2]
        track = sys.argv[3] if len(sys.argv) > 3 else None
        net, prob, opt = build(track)
        if mode == "slow":
            # a slow callback makes the run last long enough to be killed mid-way; it does not
            # touch the numbers
            cb = lambda step, n: time.sleep(0.004)
            res = dl.train(net, prob, opt, steps=4000, progress=False, checkpoint=path,
                           checkpoint_every=20, callback=cb, callback_every=10, **tracking(track))
        elif mode == "interrupt":
            big = dl.DeepLinearNetwork(depth=3, width=200, init_scale=0.5, seed=1)
            bp = dl.problems.factorization(200, 4, seed=2)
            def cb(step, n):
                if step == 0:
                    print("started", flush=True)
            t0 = time.perf_counter()
            res = dl.train(big, bp, dl.GD(lr=1.0), steps=10**8, progress=False, callback=cb)
            print(res.status, res.n_steps, len(res.train_loss), flush=True)
        else:
            res = dl.train(net, prob, opt, steps=4000, progress=False, checkpoint=path,
                           checkpoint_every=20, **tracking(track))
        trk = {f"trk_{k}": v for k, v in (res.tracking or {}).items() if k != "mode"}
        np.savez(path + ".out.npz", train=res.train_loss, test=res.test_loss, steps=res.steps,
                 *net.weights, **trk)
""")


@pytest.fixture()
def script(tmp_path):
    p = tmp_path / "run.py"
    p.write_text(SCRIPT)
    return p


def _uninterrupted(tmp_path, track=None):
    sys.path.insert(0, str(tmp_path))
    try:
        ns: dict = {}
        exec(compile(SCRIPT, "run.py", "exec"), ns)
        net, prob, opt = ns["build"](track)
        kw = ns["tracking"](track)
    finally:
        sys.path.pop(0)
    res = dl.train(net, prob, opt, steps=4000, progress=False, **kw)
    return res, net


def _assert_same_tracking(got: dict, ref: dict) -> None:
    """Every tracked quantity equal bit for bit (NaN where NaN): records, counters, residuals."""
    assert set(got) == set(ref)
    for k, v in ref.items():
        if k == "mode":
            assert got[k] == v
            continue
        a, b = np.asarray(got[k]), np.asarray(v)
        assert a.shape == b.shape and a.dtype == b.dtype, k
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), k


@pytest.mark.parametrize("track", [None, "incremental", "structured"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, script, track):
    ckpt = tmp_path / "run.ckpt"
    extra = [] if track is None else [track]
    proc = subprocess.Popen([sys.executable, str(script), "slow", str(ckpt)] + extra)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until a checkpoint beyond the start exists
            if ckpt.exists():
                time.sleep(0.3)
                break
            time.sleep(0.02)
        assert ckpt.exists(), "no checkpoint written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with np.load(ckpt) as z:
        import json

        killed_at = json.loads(str(z["__header__"]))["step"]
    assert 0 < killed_at < 4000, killed_at
    # resume in a fresh process with the same call
    subprocess.run([sys.executable, str(script), "resume", str(ckpt)] + extra, check=True, timeout=300)
    ref, net = _uninterrupted(tmp_path, track)
    with np.load(str(ckpt) + ".out.npz") as z:
        assert np.array_equal(z["steps"], ref.steps)
        assert np.array_equal(z["train"], ref.train_loss)
        if track is None:
            assert np.array_equal(z["test"], ref.test_loss)
        for i, w in enumerate(net.weights):
            assert np.array_equal(z[f"arr_{i}"], w)
        if track is not None:
            got = {k[4:]: z[k] for k in z.files if k.startswith("trk_")}
            _assert_same_tracking({"mode": track, **got}, ref.tracking)
            # records over the whole run: before the kill (restored) and after it (resumed)
            assert ref.tracking["steps"][0] == 0 and ref.tracking["steps"][-1] == 4000
            if track == "incremental":
                # the warm-started iteration ran (random directions drawn) on both sides; its
                # angles are NaN here: the 2r-th value ties with the flat bulk (rho)
                assert ref.tracking["iterations"] > 0
                assert np.isfinite(ref.tracking["singular_values"]).all()
            else:
                assert ref.tracking["verify_error"] > 0


def test_checkpoint_of_another_run_is_refused(tmp_path):
    ckpt = tmp_path / "a.ckpt"
    net = dl.DeepLinearNetwork(depth=2, width=6, seed=0)
    prob = dl.problems.factorization(6, 2, seed=0)
    dl.train(net, prob, dl.GD(lr=0.1), steps=5, progress=False, checkpoint=ckpt, checkpoint_every=2)
    assert ckpt.exists()
    with pytest.raises(ValueError, match="checkpoint"):
        dl.train(dl.DeepLinearNetwork(depth=2, width=6, seed=0), prob, dl.Adam(lr=0.1), steps=5,
                 progress=False, checkpoint=ckpt)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint"):
        dl.train(net, prob, dl.GD(lr=0.1), steps=5, progress=False, checkpoint=tmp_path / "junk.ckpt")


def _tracked_setup(dtype=np.float64):
    net = dl.DeepLinearNetwork(depth=3, width=14, init_scale=0.3, seed=5, dtype=dtype)
    prob = dl.problems.factorization(14, 2, seed=6)
    return net, prob, dl.GD(lr=5.0, momentum=0.5)


TRACK_OPTIONS = {"full": {}, "incremental": {}, "structured": {"k": 3, "verify_every": 2}}


@pytest.mark.parametrize("track,dtype,same_net", [
    ("full", np.float64, False), ("incremental", np.float64, False),
    ("incremental", np.float32, False), ("structured", np.float64, False),
    ("incremental", np.float64, True), ("structured", np.float64, True)])
def test_tracked_run_resumed_from_its_checkpoint_is_bit_identical(tmp_path, track, dtype, same_net):
    """A tracked run of 150 steps (150 is a record step) continued to 300 from its checkpoint
    equals one run of 300 steps: losses, weights and every tracked array.  ``same_net``: the
    network passed again is the trained one, not a fresh one: the tracker must be rebuilt from
    the stored bases and ρ(0), not from its current weights (structured: ρ(t) would restart)."""
    kw = dict(progress=False, track=dl.Tracking(track, every=3, **TRACK_OPTIONS[track]))
    net, prob, opt = _tracked_setup(dtype)
    ref = dl.train(net, prob, opt, 300, **kw)
    ckpt = tmp_path / "t.ckpt"
    net2 = _tracked_setup(dtype)[0]
    dl.train(net2, prob, opt, 150, checkpoint=ckpt, checkpoint_every=40, **kw)
    net3 = net2 if same_net else _tracked_setup(dtype)[0]
    res = dl.train(net3, prob, opt, 300, checkpoint=ckpt, checkpoint_every=40, **kw)
    assert np.array_equal(res.train_loss, ref.train_loss)
    for a, b in zip(net3.weights, net.weights):
        assert np.array_equal(a, b)
    _assert_same_tracking(res.tracking, ref.tracking)
    if track == "incremental":
        assert ref.tracking["iterations"] > 0


def _rewrite(path, change) -> None:
    """Rewrites the checkpoint at ``path`` with ``change(arrays)`` applied."""
    with np.load(path) as z:
        arrays = dict(z)
    change(arrays)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _lose_rng(a):  # another generator state: other random directions from the next record on
    a["trk_rng"] = a["trk_rng"].copy()
    a["trk_rng"][0] ^= 1


def _lose_warm_starts(a):  # no warm starts: the next record starts from an exact SVD
    for k in [k for k in a if k.startswith(("trk_inc_u_", "trk_inc_v_"))]:
        a[k] = np.zeros((0, 0))


@pytest.mark.parametrize("lose", [_lose_rng, _lose_warm_starts])
def test_incremental_resume_depends_on_the_restored_tracker_state(tmp_path, lose):
    """The bit-identity of resumed incremental tracking is not vacuous: resumed with the
    generator's state or the warm starts lost (what a checkpoint without the tracker's state
    would give), the training is the same but the recorded values differ in their last bits."""
    kw = dict(progress=False, track=dl.Tracking("incremental", every=3))
    net, prob, opt = _tracked_setup()
    ref = dl.train(net, prob, opt, 300, **kw)
    ckpt = tmp_path / "t.ckpt"
    dl.train(_tracked_setup()[0], prob, opt, 150, checkpoint=ckpt, **kw)
    _rewrite(ckpt, lose)
    res = dl.train(_tracked_setup()[0], prob, opt, 300, checkpoint=ckpt, **kw)
    assert np.array_equal(res.train_loss, ref.train_loss)
    got, want = res.tracking["singular_values"], ref.tracking["singular_values"]
    first = np.searchsorted(ref.tracking["steps"], 150)
    assert np.array_equal(got[:first + 1], want[:first + 1])  # restored records: untouched
    assert not np.array_equal(got, want, equal_nan=True)


def test_checkpoint_of_a_tracked_run_needs_the_same_tracking(tmp_path):
    ckpt = tmp_path / "t.ckpt"
    net, prob, opt = _tracked_setup()
    base = dict(track=dl.Tracking("incremental", every=3))
    dl.train(net, prob, opt, 30, progress=False, checkpoint=ckpt, **base)
    other = [dict(track=dl.Tracking("full", every=3)), dict(track=dl.Tracking("incremental", every=4)),
             dict(track=dl.Tracking("incremental", every=3, k=2)),
             dict(track=dl.Tracking("incremental", every=3, tol=1e-8)),
             dict(track=dl.Tracking("incremental", every=3, max_iter=5)), {}]
    for kw in other:
        with pytest.raises(ValueError, match="^checkpoint: .*differs in: track"):
            dl.train(_tracked_setup()[0], prob, opt, 60, progress=False, checkpoint=ckpt, **kw)
    # the reverse: an untracked run's checkpoint, resumed with tracking
    plain = tmp_path / "plain.ckpt"
    dl.train(_tracked_setup()[0], prob, opt, 30, progress=False, checkpoint=plain)
    with pytest.raises(ValueError, match="^checkpoint: .*differs in: track"):
        dl.train(_tracked_setup()[0], prob, opt, 60, progress=False, checkpoint=plain, **base)
    # an explicit basis must be the one the run used
    fresh = _tracked_setup()[0]
    with pytest.raises(ValueError, match="^checkpoint: .*another reference basis"):
        dl.train(fresh, prob, opt, 60, progress=False, checkpoint=ckpt,
                 track=dl.Tracking("incremental", every=3, basis=dl.invariant_basis(fresh, prob, method="gradient")))
    # the same settings (and the same basis, given explicitly) resume
    res = dl.train(fresh, prob, opt, 60, progress=False, checkpoint=ckpt,
                   track=dl.Tracking("incremental", every=3, basis=dl.invariant_basis(fresh, prob)))
    assert res.n_steps == 60 and res.tracking["steps"][-1] == 60


@pytest.mark.parametrize("change", [
    lambda a: a.__setitem__("trk_singular_values", a["trk_singular_values"][:-1]),
    lambda a: a.__setitem__("trk_angles_align", a["trk_angles_align"][:-1]),
    lambda a: a.__setitem__("trk_steps", a["trk_steps"][::-1].copy()),
    lambda a: a.__setitem__("trk_inc_u_1", np.zeros((3, 4))),
    lambda a: a.__setitem__("trk_rng", np.zeros(6, dtype=np.uint64)),
    lambda a: a.__setitem__("trk_rng", np.zeros(5, dtype=np.uint64)),
    lambda a: a.pop("trk_rng"),
    lambda a: a.pop("trk_ref_u_0"),
], ids=["values", "align", "steps", "warm-start", "rng-zero", "rng-short", "rng-missing", "basis-missing"])
def test_damaged_tracking_state_is_refused(tmp_path, change):
    ckpt = tmp_path / "t.ckpt"
    kw = dict(progress=False, track=dl.Tracking("incremental", every=3))
    net, prob, opt = _tracked_setup()
    dl.train(net, prob, opt, 30, checkpoint=ckpt, **kw)
    _rewrite(ckpt, change)
    with pytest.raises(ValueError, match="^checkpoint: "):
        dl.train(_tracked_setup()[0], prob, opt, 60, checkpoint=ckpt, **kw)


def test_resume_of_a_finished_run_returns_the_same_result(tmp_path):
    ckpt = tmp_path / "done.ckpt"
    prob = dl.problems.factorization(8, 2, seed=1)
    net1 = dl.DeepLinearNetwork(depth=3, width=8, init_scale=0.7, seed=2)
    r1 = dl.train(net1, prob, dl.GD(lr=0.05, momentum=0.9), steps=50, progress=False, checkpoint=ckpt)
    net2 = dl.DeepLinearNetwork(depth=3, width=8, init_scale=0.7, seed=2)
    r2 = dl.train(net2, prob, dl.GD(lr=0.05, momentum=0.9), steps=50, progress=False, checkpoint=ckpt)
    assert np.array_equal(r1.train_loss, r2.train_loss)
    for a, b in zip(net1.weights, net2.weights):
        assert np.array_equal(a, b)
    # extending the budget continues from the checkpoint, equal to one longer run
    r3 = dl.train(net2, prob, dl.GD(lr=0.05, momentum=0.9), steps=80, progress=False, checkpoint=ckpt)
    net4 = dl.DeepLinearNetwork(depth=3, width=8, init_scale=0.7, seed=2)
    r4 = dl.train(net4, prob, dl.GD(lr=0.05, momentum=0.9), steps=80, progress=False)
    assert np.array_equal(r3.train_loss, r4.train_loss)


def test_sigint_returns_partial_result_quickly(tmp_path, script):
    proc = subprocess.Popen([sys.executable, str(script), "interrupt", str(tmp_path / "x")],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "started"
        time.sleep(1.0)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        returned = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    status, n_steps, n_loss = out.split()[:3]
    assert status == "interrupted"
    assert int(n_steps) > 0 and int(n_loss) >= 1
    # the run stops after the current chunk (about 0.2 s of work); allow for process exit and
    # a loaded machine
    assert returned < 5.0, returned


def test_two_threads_give_the_same_results_as_one_after_another():
    prob = dl.problems.completion(60, 3, 0.4, seed=7)

    def run(seed):
        net = dl.DeepLinearNetwork(depth=3, width=60, init_scale=0.5, seed=seed)
        res = dl.train(net, prob, dl.GD(lr=2.0, momentum=0.5), steps=300, progress=False)
        return res, net

    seq = [run(1), run(2)]
    out: dict = {}
    threads = [threading.Thread(target=lambda s=s: out.__setitem__(s, run(s))) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, (res, net) in zip((1, 2), seq):
        res_t, net_t = out[s]
        assert np.array_equal(res.train_loss, res_t.train_loss)
        assert np.array_equal(res.test_loss, res_t.test_loss)
        for a, b in zip(net.weights, net_t.weights):
            assert np.array_equal(a, b)


def test_training_releases_the_gil():
    net = dl.DeepLinearNetwork(depth=3, width=150, init_scale=0.5, seed=0)
    prob = dl.problems.factorization(150, 3, seed=0)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        dl.train(net, prob, dl.GD(lr=1.0), steps=400, progress=False)
    finally:
        stop.set()
        t.join()
    gaps = np.diff(ticks)
    assert len(ticks) > 5
    # a held GIL would starve the ticker for whole chunks (~0.2 s)
    assert np.median(gaps) < 0.05


def test_sizes_that_cannot_fit_are_refused_up_front():
    with pytest.raises(ValueError, match="^width: .*GiB"):
        dl.DeepLinearNetwork(depth=3, width=10**6)
    with pytest.raises(ValueError, match="^dims: .*GiB"):  # the argument given
        dl.DeepLinearNetwork(depth=2, dims=[10**7, 10**6, 3])
