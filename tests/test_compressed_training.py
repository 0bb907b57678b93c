"""Compressed networks as first-class runs of ``dl.train`` (issue 14).

Oracles: NumPy's SVD of the lifted (wide) network, an uninterrupted run for checkpoint resume,
the lifted network's loss computed in NumPy, ``dl.rho_schedule``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import deeplinear as dl

D, R, L, EPS = 24, 2, 3, 0.3


def setup(seed=1):
    net = dl.DeepLinearNetwork(L, D, init_scale=EPS, seed=seed)
    prob = dl.problems.factorization(D, R, seed=seed, reduction="mean")
    return dl.compress(net, prob), prob


def wide_loss(comp, prob, weight_decay=0.0):
    ws = comp.lift().weights
    e2e = np.linalg.multi_dot(ws[::-1])
    return 0.5 * prob.c * np.sum((e2e - prob.target) ** 2) + 0.5 * weight_decay * sum(np.sum(w * w) for w in ws)


# -- checkpoint: SIGKILL mid-run, resume bit-identical ----------------------------------------------

CHILD = textwrap.dedent("""
    import os, signal, sys
    import deeplinear as dl
    sys.path.insert(0, {tests!r})
    from test_compressed_training import setup, OPTS
    comp, prob = setup()
    def kill(step, c):
        if step == 60:
            os.kill(os.getpid(), signal.SIGKILL)
    dl.train(comp, prob, OPTS[{name!r}], 200, progress=False, checkpoint={path!r}, checkpoint_every=10,
             callback=kill, callback_every=20, track={track!r})
""")

OPTS = {"gd": dl.GD(lr=2.0), "momentum": dl.GD(lr=1.2, momentum=0.8),
        "weight_decay": dl.GD(lr=2.0, weight_decay=0.01), "nesterov": dl.GD(lr=1.2, momentum=0.8, nesterov=True)}


@pytest.mark.parametrize("name,track", [("gd", None), ("momentum", None), ("weight_decay", None),
                                        ("nesterov", "full")])
def test_sigkill_and_resume_is_bit_identical(tmp_path, name, track):
    path = str(tmp_path / "c.ckpt")
    code = CHILD.format(tests=os.path.dirname(__file__), name=name, path=path, track=track)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert os.path.exists(path)
    ref_comp, prob = setup()
    ref = dl.train(ref_comp, prob, OPTS[name], 200, progress=False, track=track)
    comp, _ = setup()
    rhos = {}
    res = dl.train(comp, prob, OPTS[name], 200, progress=False, checkpoint=path, track=track,
                   callback=lambda s, c: rhos.setdefault(s, c.rho))
    assert min(rhos) == 50  # resumed from the checkpoint at step 50, not from the start
    np.testing.assert_array_equal(res.train_loss, ref.train_loss)
    np.testing.assert_array_equal(res.steps, ref.steps)
    assert comp.rho == ref_comp.rho and comp.rho != EPS
    for a, b in zip(comp.blocks.weights, ref_comp.blocks.weights):
        np.testing.assert_array_equal(a, b)
    if track is not None:
        np.testing.assert_array_equal(res.tracking["singular_values"], ref.tracking["singular_values"])


# -- tracking: the wide network's exact singular values, from the blocks ---------------------------

def _learning_angles(s, vecs, ref, rank2):
    """NumPy oracle of the learning-subspace rule (the 2r values farthest from the median in
    s², NaN when the 2r-th and (2r+1)-th tie) and principal angles against ``ref``."""
    med = np.sort(s)[len(s) // 2]
    dist = np.abs(s * s - med * med)
    order = np.argsort(-dist, kind="stable")
    if dist[order[rank2 - 1]] - dist[order[rank2]] <= 1e-10 * s[0] ** 2:
        return np.full(rank2, np.nan)
    q = vecs[:, order[:rank2]]
    cos = np.clip(np.linalg.svd(ref.T @ q, compute_uv=False), 0, 1)
    return np.sort(np.arccos(cos))


@pytest.mark.parametrize("mode", ["full", "structured", "incremental"])
def test_tracking_equals_svd_of_the_lift(mode):
    comp, prob = setup(seed=3)
    lifted = {}

    def grab(step, c):
        ws = c.lift().weights
        lifted[step] = [np.linalg.svd(w) for w in ws]

    res = dl.train(comp, prob, dl.GD(lr=2.0, momentum=0.5), 60, progress=False,
                   track=dl.Tracking(mode, every=5), callback=grab, callback_every=5)
    tr = res.tracking
    assert tr["mode"] == mode
    np.testing.assert_array_equal(tr["steps"], sorted(lifted))
    k = 2 * R if mode == "incremental" else D
    assert tr["singular_values"].shape == (len(lifted), L, k)
    for i, step in enumerate(tr["steps"]):
        for l, (u, s, vt) in enumerate(lifted[step]):
            np.testing.assert_allclose(tr["singular_values"][i, l], s[:k], rtol=0, atol=1e-12 * s[0])
            want = _learning_angles(s, vt.T, comp.basis.V[l], 2 * R)
            got = tr["angles_right"][i, l]
            assert np.array_equal(np.isnan(got), np.isnan(want)), (step, l, got, want)
            np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=1e-7)
    assert np.isfinite(tr["angles_right"][-1]).all()  # identifiable once the blocks have learned


def test_tracking_top_and_bottom_k():
    comp, prob = setup()
    res = dl.train(comp, prob, dl.GD(lr=2.0), 20, progress=False, track=dl.Tracking("full", k=3, every=10))
    s = np.linalg.svd(comp.lift().weights[0], compute_uv=False)
    got = res.tracking["singular_values"][-1, 0]
    np.testing.assert_allclose(got, np.concatenate([s[:3], s[-3:]]), atol=1e-12 * s[0])


# -- every keyword honored ------------------------------------------------------------------------

def test_callback_sees_the_compressed_network_and_lift_works():
    comp, prob = setup()
    seen = {}

    def cb(step, c):
        assert c is comp
        seen[step] = wide_loss(c, prob)

    res = dl.train(comp, prob, dl.GD(lr=2.0), 30, progress=False, callback=cb, callback_every=10)
    assert sorted(seen) == [0, 10, 20, 30]
    for step, loss in seen.items():
        np.testing.assert_allclose(res.train_loss[step], loss, rtol=1e-10)


def test_tol_and_record_every():
    comp, prob = setup()
    res = dl.train(comp, prob, dl.GD(lr=5.0), 5000, tol=1e-4, record_every=7, progress=False)
    assert res.status == "converged" and res.final_loss <= 1e-4
    assert np.all(res.steps[:-1] % 7 == 0) and res.steps[-1] == res.n_steps
    np.testing.assert_allclose(res.final_loss, wide_loss(comp, prob), rtol=1e-8, atol=1e-15)


def test_progress_bar(capsys):
    comp, prob = setup()
    res = dl.train(comp, prob, dl.GD(lr=2.0), 10, progress=True)
    assert res.n_steps == 10


@pytest.mark.parametrize("policy", ["warn", "raise"])
def test_divergence(policy):
    comp, prob = setup()
    if policy == "warn":
        with pytest.warns(dl.DivergenceWarning):
            res = dl.train(comp, prob, dl.GD(lr=500.0), 500, progress=False, on_divergence=policy)
        assert res.status == "diverged"
    else:
        with pytest.raises(dl.DivergenceError):
            dl.train(comp, prob, dl.GD(lr=500.0), 500, progress=False, on_divergence=policy)


def test_checkpoint_resumes_in_process(tmp_path):
    path = tmp_path / "c.ckpt"
    ref_comp, prob = setup()
    ref = dl.train(ref_comp, prob, dl.GD(lr=2.0, momentum=0.5), 80, progress=False)
    comp, _ = setup()
    dl.train(comp, prob, dl.GD(lr=2.0, momentum=0.5), 40, progress=False, checkpoint=path)
    comp2, _ = setup()
    res = dl.train(comp2, prob, dl.GD(lr=2.0, momentum=0.5), 80, progress=False, checkpoint=path)
    np.testing.assert_array_equal(res.train_loss, ref.train_loss)
    assert comp2.rho == ref_comp.rho


def test_rho_schedule_and_a_compressed_run_agree_bit_for_bit():
    comp, prob = setup()
    opt = dl.GD(lr=2.0, momentum=0.7, weight_decay=0.01)
    rhos = []
    dl.train(comp, prob, opt, 50, progress=False, callback=lambda s, c: rhos.append(c.rho), callback_every=1)
    want = dl.rho_schedule(EPS, 2.0, L, 50, weight_decay=0.01, reduction_constant=prob.c, momentum=0.7)
    np.testing.assert_array_equal(np.array(rhos), want)


# -- refused, each with a clear error --------------------------------------------------------------

@pytest.mark.parametrize("kw, exc, match", [
    ({"callback": 5}, TypeError, "^callback"),
    ({"track": "bogus"}, ValueError, "^track"),
    ({"track": dl.Tracking("structured", verify_every=2)}, ValueError, "^verify_every"),
    ({"callback_every": 3}, ValueError, "^callback_every"),
    ({"checkpoint_every": 3}, ValueError, "^checkpoint_every"),
    ({"on_divergence": "ignore"}, ValueError, "^on_divergence"),
    ({"record_every": 0}, ValueError, "^record_every"),
])
def test_refused_keywords(kw, exc, match):
    comp, prob = setup()
    with pytest.raises(exc, match=match):
        dl.train(comp, prob, dl.GD(lr=2.0), 5, progress=False, **kw)


def test_basis_refused_on_a_compressed_network():
    comp, prob = setup()
    basis = comp.basis
    with pytest.raises(ValueError, match="^basis"):
        dl.train(comp, prob, dl.GD(lr=2.0), 5, progress=False, track=dl.Tracking("full", basis=basis))


def test_adam_is_the_approximation_with_a_warning():
    comp, prob = setup()
    with pytest.warns(dl.ApproximationWarning):
        res = dl.train(comp, prob, dl.Adam(lr=1e-3), 5, progress=False)
    assert res.meta["exact"] is False and not comp.exact
