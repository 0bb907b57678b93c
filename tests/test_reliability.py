"""Runs that survive faults: checkpoints across SIGKILL, Ctrl-C, threads, memory refusal."""

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

    def build():
        net = dl.DeepLinearNetwork(depth=3, width=24, init_scale=0.5, seed=3)
        prob = dl.problems.completion(24, 3, 0.5, seed=4)
        opt = dl.Adam(lr=3e-3, weight_decay=1e-4)
        return net, prob, opt

    if __name__ == "__main__":
        mode, path = sys.argv[1], sys.argv[2]
        net, prob, opt = build()
        if mode == "slow":
            # a slow callback makes the run last long enough to be killed mid-way; it does not
            # touch the numbers
            cb = lambda step, n: time.sleep(0.004)
            res = dl.train(net, prob, opt, steps=4000, progress=False, checkpoint=path,
                           checkpoint_every=20, callback=cb, callback_every=10)
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
                           checkpoint_every=20)
        np.savez(path + ".out.npz", train=res.train_loss, test=res.test_loss, steps=res.steps,
                 *net.weights)
""")


@pytest.fixture()
def script(tmp_path):
    p = tmp_path / "run.py"
    p.write_text(SCRIPT)
    return p


def _uninterrupted(tmp_path):
    sys.path.insert(0, str(tmp_path))
    try:
        ns: dict = {}
        exec(compile(SCRIPT, "run.py", "exec"), ns)
        net, prob, opt = ns["build"]()
    finally:
        sys.path.pop(0)
    res = dl.train(net, prob, opt, steps=4000, progress=False)
    return res, net


def test_sigkill_then_resume_is_bit_identical(tmp_path, script):
    ckpt = tmp_path / "run.ckpt"
    proc = subprocess.Popen([sys.executable, str(script), "slow", str(ckpt)])
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
    subprocess.run([sys.executable, str(script), "resume", str(ckpt)], check=True, timeout=300)
    ref, net = _uninterrupted(tmp_path)
    with np.load(str(ckpt) + ".out.npz") as z:
        assert np.array_equal(z["steps"], ref.steps)
        assert np.array_equal(z["train"], ref.train_loss)
        assert np.array_equal(z["test"], ref.test_loss)
        for i, w in enumerate(net.weights):
            assert np.array_equal(z[f"arr_{i}"], w)


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
    with pytest.raises(ValueError, match="^width: .*GiB"):
        dl.DeepLinearNetwork(depth=2, dims=[10**7, 10**6, 3])
