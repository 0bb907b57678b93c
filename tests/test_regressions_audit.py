"""Regressions of an audit of the public API (one test per finding): inputs of every public
function converted or refused as the README's conventions say, every keyword honored or refused,
and tracking that never records a silently wrong value or angle."""

from __future__ import annotations

import os

import numpy as np
import pytest

import deeplinear as dl


# --- decay_fit: D and layers ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.array([1.0, 0.5, 0.25]) + 1j, np.array([1.0, 0.5], dtype=object),
                                 np.array([True, True, True]), np.array(["1", "0.5"]), "abc"])
def test_decay_fit_refuses_non_real_D(bad):
    with pytest.raises(TypeError, match="^D: "):
        dl.decay_fit(bad)


def test_decay_fit_refuses_complex_layers_and_accepts_integer_input():
    with pytest.raises(TypeError, match="^layers: "):
        dl.decay_fit([1.0, 0.5, 0.25, 0.125], layers=np.arange(4) + 1j)
    with pytest.raises(ValueError, match="^D: must be 1-D"):
        dl.decay_fit([[1.0, 0.5]])
    # integers and lists are numbers like any other: the fit of 8, 4, 2, 1 over layers 1..4
    fit = dl.decay_fit(np.array([8, 4, 2, 1]), layers=[1, 2, 3, 4])
    assert np.isclose(fit.ratio, 0.5, rtol=1e-14) and np.isclose(fit.r2, 1.0, rtol=1e-14)


# --- class_separation: integer arrays and nested lists as the other array inputs ------------

def _separation_oracle(h, labels):
    h = np.asarray(h, dtype=np.float64)
    classes = np.unique(labels)
    means = np.stack([h[:, labels == k].mean(axis=1) for k in classes], axis=1)
    idx = np.searchsorted(classes, labels)
    within = np.sum((h - means[:, idx]) ** 2) / h.shape[1]
    between = np.sum((means - h.mean(axis=1, keepdims=True)) ** 2) / classes.size
    return within / between


def test_class_separation_accepts_integer_and_list_features():
    rng = np.random.default_rng(0)
    H = rng.integers(-5, 6, size=(4, 12))
    labels = np.repeat([0, 1, 2], 4)
    want = _separation_oracle(H, labels)
    for feat in (H, H.astype(np.float64), H.tolist(), np.asfortranarray(H), H.astype(np.float32)):
        got = dl.class_separation([feat], labels)
        assert got.shape == (1,) and np.isclose(got[0], want, rtol=1e-12), type(feat)
    with pytest.raises(TypeError, match=r"^features\[0\]: must be real"):
        dl.class_separation([H + 1j], labels)


# --- Classification keeps float64 copies ---------------------------------------------------

def test_classification_stores_float64():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 8)).astype(np.float32)
    labels = np.array([0, 1] * 4)
    prob = dl.Classification(X, labels, test=(X[:, :4], labels[:4]))
    for a in (prob.X, prob.X_test):
        assert a.dtype == np.float64 and a.flags.c_contiguous and not a.flags.writeable
    assert np.array_equal(prob.X, X.astype(np.float64))


# --- reduced_network: seed and method only where they act, spectrum checked -----------------

def test_reduced_network_refuses_sampling_keywords_with_overlap():
    K = np.array([[0.6, 0.0], [0.0, 0.8]])
    base = dict(init_scale=0.1, overlap=K)
    dl.reduced_network(50, 3, [2.0, 1.0], **base)  # accepted without them
    for kw in ({"seed": 5}, {"seed": 0}, {"method": "frame"}, {"method": "bartlett"}):
        with pytest.raises(ValueError, match=f"^{next(iter(kw))}: applies only to a sampled overlap"):
            dl.reduced_network(50, 3, [2.0, 1.0], **base, **kw)
    # without overlap both act: another seed, another sampled overlap
    a, _ = dl.reduced_network(50, 3, [2.0, 1.0], init_scale=0.1, seed=1)
    b, _ = dl.reduced_network(50, 3, [2.0, 1.0], init_scale=0.1, seed=2)
    assert not np.array_equal(a.problem.phi_tilde, b.problem.phi_tilde)
    c, _ = dl.reduced_network(50, 3, [2.0, 1.0], init_scale=0.1)  # defaults: seed 0, bartlett
    d, _ = dl.reduced_network(50, 3, [2.0, 1.0], init_scale=0.1, seed=0, method="bartlett")
    assert np.array_equal(c.problem.phi_tilde, d.problem.phi_tilde)


@pytest.mark.parametrize("bad,err", [(np.array([2.0, 1.0]) + 1j, TypeError), (np.array([True, True]), TypeError),
                                     (np.array([2.0, 1.0], dtype=object), TypeError), ("abc", TypeError),
                                     ([[2.0, 1.0]], ValueError), ([], ValueError)])
def test_reduced_network_refuses_bad_spectrum(bad, err):
    with pytest.raises(err, match="^spectrum: "):
        dl.reduced_network(50, 3, bad)


# --- CompressedCompletion: power_steps only with the spectral init --------------------------

def test_power_steps_refused_with_wide_init_whatever_its_value():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((12, 2)) @ rng.standard_normal((2, 12))
    prob = dl.Completion(target, (rng.random((12, 12)) < 0.6).astype(float))
    for value in (1, 3, 8):
        with pytest.raises(ValueError, match="^power_steps: applies to init='spectral' only"):
            dl.CompressedCompletion(prob, rank=2, depth=2, init="wide", power_steps=value)
    assert dl.CompressedCompletion(prob, rank=2, depth=2, init="wide").power_steps is None
    assert dl.CompressedCompletion(prob, rank=2, depth=2).power_steps == 3


# --- compressed networks: settings of an iteration they do not run are refused --------------

@pytest.mark.parametrize("kw", [{"tol": 1e-2}, {"max_iter": 4}])
def test_compressed_tracking_refuses_iteration_settings(kw):
    prob = dl.problems.factorization(20, 2, seed=0)
    comp = dl.compress(dl.DeepLinearNetwork(3, 20, init_scale=0.3, seed=1), prob)
    with pytest.raises(ValueError, match=f"^{next(iter(kw))}: a compressed network's tracked values are exact"):
        dl.train(comp, prob, dl.GD(lr=2.0), steps=3, track=dl.Tracking("incremental", **kw), progress=False)


# --- public generators validate their arguments ---------------------------------------------

def test_generators_validate_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="^rank: "):
        dl.problems.low_rank_target(5, 0, rng)
    with pytest.raises(ValueError, match="^d: "):
        dl.problems.low_rank_target(-1, 1, rng)
    with pytest.raises(ValueError, match="^d_in: "):
        dl.problems.low_rank_target(5, 1, rng, d_in=0)
    with pytest.raises(TypeError, match="^rng: "):
        dl.problems.low_rank_target(5, 1, 0)
    with pytest.raises(ValueError, match="^n: "):
        dl.problems.haar_orthogonal(0, rng)
    with pytest.raises(TypeError, match="^rng: "):
        dl.problems.haar_orthogonal(3, None)
    # what they draw is unchanged: Φ = A Bᵀ / sqrt(r) from one stream, A then B
    a = np.random.default_rng(3)
    A, B = a.standard_normal((6, 2)), a.standard_normal((4, 2))
    assert np.array_equal(dl.problems.low_rank_target(6, 2, np.random.default_rng(3), d_in=4), A @ B.T / np.sqrt(2))
    q = dl.problems.haar_orthogonal(5, np.random.default_rng(4))
    assert np.allclose(q.T @ q, np.eye(5), atol=1e-14)


# --- Result paths --------------------------------------------------------------------------

def test_result_paths_are_named(tmp_path):
    res = dl.train(dl.DeepLinearNetwork(2, 4, seed=0), dl.problems.factorization(4, 1), dl.GD(lr=0.1), steps=2,
                   progress=False)
    for call in (lambda: res.save(3), lambda: res.save_json(3), lambda: dl.Result.load(3)):
        with pytest.raises(TypeError, match="^path: must be a path"):
            call()
    with pytest.raises(ValueError, match="^path: the folder"):
        res.save_json(tmp_path / "missing" / "r.json")


# --- InvariantBasis checks what it is given -------------------------------------------------

def test_invariant_basis_constructor_checks_arrays():
    net = dl.DeepLinearNetwork(3, 10, init_scale=0.5, seed=0)
    prob = dl.problems.factorization(10, 2, seed=0)
    b = dl.invariant_basis(net, prob)
    ok = dict(U=b.U, V=b.V, rank=2, method=b.method, init_scale=b.init_scale, init=b.init)
    again = dl.InvariantBasis(**ok)
    assert all(np.array_equal(x, y) for x, y in zip(again.U, b.U))
    with pytest.raises(TypeError, match=r"^U\[0\]: must be real"):
        dl.InvariantBasis(**{**ok, "U": [u + 0j for u in b.U]})
    with pytest.raises(TypeError, match="^V: must be a non-empty list"):
        dl.InvariantBasis(**{**ok, "V": b.V[0]})
    with pytest.raises(ValueError, match=r"^U\[1\], V\[1\]: must be"):
        dl.InvariantBasis(**{**ok, "U": [b.U[0], b.U[1][:, :3], b.U[2]]})
    with pytest.raises(ValueError, match="^U, V, init: must have one matrix per layer"):
        dl.InvariantBasis(**{**ok, "init": b.init[:2]})


# --- tracking: "structured" only where it is exact --------------------------------------------

def _unit_target(d, r, seed):
    phi = dl.problems.low_rank_target(d, r, np.random.default_rng(seed))
    return phi / np.linalg.norm(phi, 2)


def test_structured_refuses_relu_network_with_basis():
    d = 12
    prob = dl.Factorization(_unit_target(d, 2, 0), reduction="sum")
    basis = dl.invariant_basis(dl.DeepLinearNetwork(3, d, init_scale=0.5, seed=3), prob)
    relu = dl.DeepLinearNetwork(3, d, init_scale=0.5, seed=3, activation="relu")
    with pytest.raises(ValueError, match="^net: track='structured'.*needs a linear network"):
        dl.train(relu, prob, dl.GD(lr=0.05), 5, progress=False, track=dl.Tracking("structured", basis=basis))


def test_structured_checks_a_given_basis_at_init():
    """A basis of the same weights with another ε is right up to the bulk value, which is now
    measured (recorded values exact); one of other weights or another target is refused."""
    d, r = 20, 2
    prob = dl.Factorization(_unit_target(d, r, 0), reduction="sum")
    net_of = lambda eps=0.5, seed=3: dl.DeepLinearNetwork(3, d, init_scale=eps, seed=seed)
    other_target = dl.Factorization(_unit_target(d, r, 7), reduction="sum")
    for basis, match in ((dl.invariant_basis(net_of(seed=4), prob), "^track: 'structured' needs weights of the invariant form"),
                         (dl.invariant_basis(net_of(), other_target), "^basis: the target is off span")):
        with pytest.raises(ValueError, match=match):
            dl.train(net_of(), prob, dl.GD(lr=0.05), 10, progress=False, track=dl.Tracking("structured", basis=basis))
    weights = {}
    res = dl.train(net_of(), prob, dl.GD(lr=0.05), 100, progress=False,
                   track=dl.Tracking("structured", every=50, basis=dl.invariant_basis(net_of(eps=0.3), prob)),
                   callback=lambda s, n: weights.__setitem__(s, n.weights), callback_every=50)
    t = res.tracking
    for i, s in enumerate(t["steps"]):
        for l in range(3):
            exact = np.linalg.svd(weights[int(s)][l], compute_uv=False)
            assert np.max(np.abs(t["singular_values"][i, l] - exact)) <= 1e-12 * exact[0], (s, l)


def test_float32_angles_not_decided_by_round_off():
    """float32 spreads an exactly degenerate bulk by ~1e-7: at an orthogonal init (all values
    equal) the learning subspace is not identifiable (NaN, as in float64), and incremental's
    top-2r set never takes a bulk direction for a learned one (no angle of π/2)."""
    d, r = 20, 2
    prob = dl.Factorization(_unit_target(d, r, 0), reduction="sum")
    for mode in ("full", "incremental"):
        net = dl.DeepLinearNetwork(3, d, init_scale=0.5, seed=1, dtype=np.float32)
        a = dl.train(net, prob, dl.GD(lr=0.05), 500, progress=False, track=dl.Tracking(mode, every=50)).tracking
        assert np.all(np.isnan(a["angles_right"][0])), mode
        later = a["angles_right"][1:]
        assert np.all(np.isnan(later) | (later < 1e-2)), (mode, np.nanmax(later))


def test_incremental_small_max_iter_keeps_the_certificate():
    """max_iter below the safeguard's three block steps: such records fall back to the exact
    SVD instead of being accepted without the safeguard (values were off by 1.17 tol)."""
    rng = np.random.default_rng(0)
    d, tol = 60, 1e-2
    target = rng.standard_normal((d, 3)) @ rng.standard_normal((3, d))
    prob = dl.Completion(target, (rng.random((d, d)) < 0.5).astype(float))
    net = dl.DeepLinearNetwork(4, d, init_scale=0.5, seed=0)
    weights = {}
    res = dl.train(net, prob, dl.RMSProp(lr=1e-3), 30, progress=False,
                   track=dl.Tracking("incremental", k=3, tol=tol, max_iter=1),
                   callback=lambda s, n: weights.__setitem__(s, n.weights), callback_every=1)
    t = res.tracking
    for i, s in enumerate(t["steps"]):
        for l in range(4):
            exact = np.linalg.svd(weights[int(s)][l], compute_uv=False)[:3]
            assert np.max(np.abs(t["singular_values"][i, l, :3] - exact)) <= tol * exact[0], (s, l)


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_verify_every_refused_outside_structured_whatever_its_value(mode):
    with pytest.raises(ValueError, match="^verify_every: applies to structured tracking only"):
        dl.Tracking(mode, verify_every=0)


# --- compressed networks and checkpoints -------------------------------------------------------

def _comp(seed, d=30, r=2, eps=0.7):
    prob = dl.problems.factorization(d, r, seed=2)
    return dl.compress(dl.DeepLinearNetwork(3, d, init_scale=eps, seed=seed), prob), prob


def test_compressed_checkpoint_refused_for_another_wide_network(tmp_path):
    """Two compressions with the same ε differ only in their reduced problem: one's checkpoint
    is not resumed by the other (it was, with the first network's blocks and history)."""
    ck = tmp_path / "run.ckpt"
    a, prob = _comp(1)
    dl.train(a, prob, dl.GD(lr=1.0), 50, progress=False, checkpoint=ck, checkpoint_every=10)
    b, _ = _comp(2)
    with pytest.raises(ValueError, match="^checkpoint: "):
        dl.train(b, prob, dl.GD(lr=1.0), 50, progress=False, checkpoint=ck, checkpoint_every=10)
    again, _ = _comp(1)  # the same wide network compressed again resumes (nothing left to do)
    res = dl.train(again, prob, dl.GD(lr=1.0), 50, progress=False, checkpoint=ck, checkpoint_every=10)
    ref = dl.train(_comp(1)[0], prob, dl.GD(lr=1.0), 50, progress=False)
    assert np.array_equal(res.train_loss, ref.train_loss)


@pytest.mark.parametrize("kind", ["wide", "compressed"])
def test_resume_after_ctrl_c_off_the_record_grid_is_identical(tmp_path, kind):
    """Ctrl-C between records (step 30, record_every = every = 7): the partial result ends at
    step 30, the resumed run records what an uninterrupted one does (it had an extra record)."""
    def make():
        comp, prob = _comp(1)
        return (comp if kind == "compressed" else dl.DeepLinearNetwork(3, 30, init_scale=0.7, seed=1)), prob

    def ctrl_c(step, net):
        if step == 30:
            raise KeyboardInterrupt

    kw = dict(record_every=7, progress=False, track=dl.Tracking("full", every=7))
    net, prob = make()
    ref = dl.train(net, prob, dl.GD(lr=1.0), 100, **kw)
    ck = tmp_path / "run.ckpt"
    net, prob = make()
    part = dl.train(net, prob, dl.GD(lr=1.0), 100, checkpoint=ck, checkpoint_every=10, callback=ctrl_c,
                    callback_every=10, **kw)
    assert part.status == "interrupted" and int(part.steps[-1]) == 30
    net, prob = make()
    res = dl.train(net, prob, dl.GD(lr=1.0), 100, checkpoint=ck, checkpoint_every=10, **kw)
    assert np.array_equal(res.steps, ref.steps) and np.array_equal(res.train_loss, ref.train_loss)
    for key in ("steps", "singular_values"):
        assert np.array_equal(res.tracking[key], ref.tracking[key], equal_nan=True), key


def test_compressed_steps_trained_after_an_in_process_resume(tmp_path):
    comp, prob = _comp(1)
    ck = tmp_path / "run.ckpt"

    def ctrl_c(step, net):
        if step == 40:
            raise KeyboardInterrupt

    dl.train(comp, prob, dl.GD(lr=1.0), 100, progress=False, checkpoint=ck, checkpoint_every=10, callback=ctrl_c,
             callback_every=10)
    assert comp.steps_trained == 40
    dl.train(comp, prob, dl.GD(lr=1.0), 100, progress=False, checkpoint=ck, checkpoint_every=10)
    assert comp.steps_trained == 100


def test_compress_refuses_a_sparse_completion_by_name():
    rows, cols = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])
    prob = dl.Completion.from_entries(rows, cols, np.ones(4), (6, 6))
    net = dl.DeepLinearNetwork(3, 6, init_scale=0.5, seed=0)
    for call in (lambda: dl.compress(net, prob, rank=1), lambda: dl.invariant_basis(net, prob, rank=1)):
        with pytest.raises(ValueError, match="^problem: a sparse Completion"):
            call()


def test_compress_of_a_tiny_init_scale():
    """ε = ‖W_1(0)‖_F / sqrt(d) of an init at 1e-170 (its squares underflow): the compression is
    exact and its lift is the network."""
    prob = dl.problems.factorization(20, 2, seed=2)
    for eps in (1e-170, 1e-200):
        net = dl.DeepLinearNetwork(3, 20, init_scale=eps, seed=1)
        comp = dl.compress(net, prob)
        assert comp.exact and np.isclose(comp.rho, eps, rtol=1e-14)
        for w, x in zip(comp.lift().weights, net.weights):
            assert np.allclose(w, x, rtol=0, atol=1e-12 * eps)


# --- experiments and sweeps: an interrupt is never a finished run ------------------------------

def test_train_reraises_an_interrupt_inside_a_job(tmp_path):
    """Inside ``interrupts_raise`` (experiments, sweep runs) a Ctrl-C stops the job after the
    call's checkpoint is written; outside it, train returns the partial result as before."""
    from deeplinear.training import interrupts_raise

    prob = dl.problems.factorization(12, 2, seed=0)

    def ctrl_c(step, net):
        if step == 20:
            raise KeyboardInterrupt

    ck = tmp_path / "run.ckpt"
    with interrupts_raise(), pytest.raises(KeyboardInterrupt):
        dl.train(dl.DeepLinearNetwork(3, 12, seed=0), prob, dl.GD(lr=0.5), 50, progress=False, checkpoint=ck,
                 checkpoint_every=10, callback=ctrl_c, callback_every=10)
    assert ck.exists()
    res = dl.train(dl.DeepLinearNetwork(3, 12, seed=0), prob, dl.GD(lr=0.5), 50, progress=False, checkpoint=ck,
                   checkpoint_every=10)
    ref = dl.train(dl.DeepLinearNetwork(3, 12, seed=0), prob, dl.GD(lr=0.5), 50, progress=False)
    assert np.array_equal(res.train_loss, ref.train_loss)
    part = dl.train(dl.DeepLinearNetwork(3, 12, seed=0), prob, dl.GD(lr=0.5), 50, progress=False, callback=ctrl_c,
                    callback_every=10)
    assert part.status == "interrupted" and int(part.steps[-1]) == 20


def test_experiment_run_does_not_report_an_interrupted_training(tmp_path, monkeypatch):
    """An experiment whose training is interrupted raises KeyboardInterrupt (it reported its
    checks on the truncated run, as passed)."""
    from deeplinear import experiments as ex
    import deeplinear.training as training

    real = training._train
    calls = []

    def interrupted_train(*args, **kwargs):  # a Ctrl-C at the first chunk boundary
        def ctrl_c(step, net):
            raise KeyboardInterrupt
        calls.append(1)
        kwargs.update(callback=ctrl_c, callback_every=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "_train", interrupted_train)
    exp = ex.get("factorization")().replace(steps=60, rows=3)
    with pytest.raises(KeyboardInterrupt):
        exp.run(tmp_path / "out", progress=False, verbose=False)
    assert calls


class _DeadPool(__import__("concurrent.futures").futures.Executor):
    """An executor whose worker died: every future fails as a broken process pool does."""

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        fut = Future()
        fut.set_exception(BrokenProcessPool("a worker died"))
        return fut


def test_sweep_does_not_save_runs_lost_with_a_dead_worker(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    grid = {"width": [20, 24]}
    base = dl.experiments.get("factorization")().replace(steps=60, rows=3)
    lost = dl.sweep("factorization", grid, out=tmp_path, base=base, executor=_DeadPool(), progress=False)
    assert [r["status"] for r in lost.rows] == ["error", "error"]
    assert not list(tmp_path.glob("*/row.json"))
    with ThreadPoolExecutor(2) as pool:
        again = dl.sweep("factorization", grid, out=tmp_path, base=base, executor=pool, progress=False)
    assert sorted(again.ran) == sorted(r["config_hash"] for r in lost.rows) and not again.reused
    assert all(r["status"] == "ok" for r in again.rows)


# --- CompressedCompletion.stable_lr counts the residual's curvature ---------------------------

def test_stable_lr_is_stable_at_few_entries_per_row_and_at_a_small_init():
    """Spectral init from 5 entries per row with heavy ball: the step diverged within 6 steps
    (the Gauss–Newton bound alone); from the paper's small init it was ~1e15 and diverged at
    the second step.  Now both train: the first steps from the small init decrease the loss."""
    import warnings

    prob = dl.problems.completion(100, 3, 0.05, seed=0)
    m = dl.CompressedCompletion(prob, rank=3, depth=3, seed=0)
    lr = m.stable_lr(prob, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dl.DivergenceWarning)
        res = dl.train(m, prob, dl.GD(lr=lr, momentum=0.9), 300, progress=False)
    assert res.status == "max_steps" and res.train_loss[-1] < res.train_loss[0]
    prob = dl.problems.completion(60, 3, 0.3, seed=0)
    m = dl.CompressedCompletion(prob, rank=3, depth=3, init="wide", seed=0)
    res = dl.train(m, prob, dl.GD(lr=m.stable_lr(prob)), 10, progress=False)
    assert res.status == "max_steps" and np.all(np.diff(res.train_loss) <= 0)


# --- files: bytes paths, damaged entry names, every read error a ValueError -------------------

def test_bytes_checkpoint_path_is_written(tmp_path):
    prob = dl.problems.factorization(10, 2, seed=0)
    ck = os.fsencode(str(tmp_path / "run.ckpt"))
    res = dl.train(dl.DeepLinearNetwork(2, 10, seed=0), prob, dl.GD(lr=0.5), 30, progress=False, checkpoint=ck,
                   checkpoint_every=10)
    assert res.status == "max_steps" and os.path.exists(ck)
    r2 = dl.train(dl.DeepLinearNetwork(2, 10, seed=0), prob, dl.GD(lr=0.5), 30, progress=False, checkpoint=ck)
    assert np.array_equal(r2.train_loss, res.train_loss)


def _rename_entry(path, old: bytes, new: bytes):
    """The zip's central-directory copy of an entry name changed (the local header's kept)."""
    data = bytearray(path.read_bytes())
    at = data.rfind(old)  # the central directory comes last
    assert at >= 0
    data[at:at + len(old)] = new
    path.write_bytes(bytes(data))


def test_result_with_a_damaged_entry_name_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.standard_normal((8, 2)) @ rng.standard_normal((2, 8))
    prob = dl.Completion(target, (rng.random((8, 8)) < 0.6).astype(float))
    res = dl.train(dl.DeepLinearNetwork(2, 8, seed=0), prob, dl.GD(lr=0.5), 5, progress=False, track="full")
    for old, new in ((b"test_rmse.npy", b"Test_rmse.npy"), (b"tracking/angles_right.npy", b"Tracking/angles_right.npy")):
        p = tmp_path / "r.npz"
        res.save(p)
        _rename_entry(p, old, new)
        with pytest.raises(ValueError, match="^path: .* is a damaged Result file"):
            dl.Result.load(p)


def test_unsupported_compression_method_is_a_value_error(tmp_path):
    import struct

    p = tmp_path / "r.npz"
    res = dl.train(dl.DeepLinearNetwork(2, 6, seed=0), dl.problems.factorization(6, 1), dl.GD(lr=0.5), 3,
                   progress=False)
    res.save(p)
    data = bytearray(p.read_bytes())
    cd = data.find(b"PK\x01\x02")  # the first central-directory entry: its method at offset 10
    data[cd + 10:cd + 12] = struct.pack("<H", 99)
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="^path: "):
        dl.Result.load(p)


def test_checkpoint_with_a_damaged_entry_name_is_refused(tmp_path):
    comp, prob = _comp(1)
    ck = tmp_path / "run.ckpt"
    dl.train(comp, prob, dl.GD(lr=1.0), 20, progress=False, checkpoint=ck, checkpoint_every=10)
    _rename_entry(ck, b"model_steps_before.npy", b"Model_steps_before.npy")
    with pytest.raises(ValueError, match="^checkpoint: .* is damaged"):
        dl.train(_comp(1)[0], prob, dl.GD(lr=1.0), 20, progress=False, checkpoint=ck, checkpoint_every=10)


# --- the BLAS choice from the environment: every value checked ----------------------------------

@pytest.mark.parametrize("env,message", [
    ({"DEEPLINEAR_BUNDLED_BLAS": "false"}, "DEEPLINEAR_BUNDLED_BLAS='false': must be 1"),
    ({"DEEPLINEAR_BUNDLED_BLAS": "yes"}, "DEEPLINEAR_BUNDLED_BLAS='yes': must be 1"),
    ({"DEEPLINEAR_BUNDLED_BLAS": "1", "DEEPLINEAR_BLAS_LIBRARY": "mkl"}, "set one of them"),
    ({"DEEPLINEAR_BUNDLED_BLAS": "1", "DEEPLINEAR_BLAS_LIBRARY": "nonsense"}, "must be one of"),
])
def test_blas_environment_values_are_checked(env, message):
    import subprocess
    import sys

    full = {k: v for k, v in os.environ.items() if k not in ("DEEPLINEAR_BUNDLED_BLAS", "DEEPLINEAR_BLAS_LIBRARY")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", "import deeplinear"], capture_output=True, text=True, env=full)
    assert out.returncode != 0 and "ImportError" in out.stderr and message in out.stderr, out.stderr[-500:]
    ok = dict(full, DEEPLINEAR_BUNDLED_BLAS="0")
    ok.pop("DEEPLINEAR_BLAS_LIBRARY", None)
    code = "import deeplinear as dl; print(dl.build_info()['blas_source'])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ok,
                          check=True).stdout.strip().splitlines()[-1] != "bundled"


def test_ctrl_c_in_the_final_callback_returns_the_result():
    prob = dl.problems.factorization(8, 1, seed=0)

    def ctrl_c_at_the_end(step, net):
        if step == 7:
            raise KeyboardInterrupt

    res = dl.train(dl.DeepLinearNetwork(2, 8, seed=0), prob, dl.GD(lr=0.5), 7, progress=False,
                   callback=ctrl_c_at_the_end, callback_every=5)
    assert res.status == "interrupted" and res.n_steps == 7 and len(res.train_loss) == 8


def test_compress_with_a_basis_of_another_target_is_not_exact():
    """The twin of structured tracking's check: compress(net, prob, basis=...) with a basis made
    for another target claimed an exact compression (its losses were 79% off the wide run's)."""
    d, r = 20, 2
    prob = dl.Factorization(_unit_target(d, r, 0), reduction="sum")
    other = dl.Factorization(_unit_target(d, r, 7), reduction="sum")
    net = dl.DeepLinearNetwork(3, d, init_scale=0.5, seed=3)
    with pytest.warns(dl.ApproximationWarning, match="off the given basis"):
        comp = dl.compress(net, prob, basis=dl.invariant_basis(net, other))
    assert not comp.exact
    own = dl.compress(net, prob, basis=dl.invariant_basis(net, prob))  # its own basis: exact
    assert own.exact
    rc = dl.train(own, prob, dl.GD(lr=0.05), 100, progress=False)
    rw = dl.train(net, prob, dl.GD(lr=0.05), 100, progress=False)
    assert np.max(np.abs(rc.train_loss - rw.train_loss) / rw.train_loss) < 1e-12
