"""Every registered experiment runs at its ``quick()`` size and its checks pass."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import deeplinear as dl
from deeplinear import experiments as ex


SHIPPED = [n for n, c in ex.registry().items() if c.__module__.startswith("deeplinear.experiments.")]


@pytest.mark.parametrize("name", SHIPPED)
def test_quick_run_passes(name, tmp_path, one_thread):
    cls = ex.get(name)
    missing = cls.missing_requirements()
    if missing:
        pytest.skip(f"needs {missing}")
    exp = cls().quick()
    assert exp != cls() or not cls.fields(), "quick() must give a smaller config"
    res = exp.run(tmp_path, progress=False, verbose=False)
    assert res.passed, res.format_checks() + "\n" + "\n".join(res.log_lines)
    assert res.status == "ok" and res.checks
    assert json.loads((tmp_path / "checks.json").read_text())["passed"]
    assert {"checks.json", "result.json"} <= set(res.files)
    for f in res.files:
        assert (tmp_path / f).is_file(), f


# -- experiment-specific behaviour ---------------------------------------------------------------

def test_equivalence_capped_wide_run(tmp_path, one_thread):
    exp = ex.get("equivalence")(width=40, rank=2, steps=30, records=3, samples=20)
    res = exp.run(tmp_path, progress=False, verbose=False)
    assert res.passed, res.format_checks()
    assert res.metrics["wide_steps"] == 30
    assert res.metrics["max_relative_loss_difference"] <= 1e-10
    assert any("--set steps=" in line for line in res.log_lines)  # how to run the whole trajectory
    data = np.load(tmp_path / "equivalence.npz")
    assert data["sv_wide"].shape[1:] == (3, 40) and data["sv_compressed_blocks"].shape[1:] == (3, 4)
    assert dl.Result.load(tmp_path / "compressed.npz").n_steps == res.metrics["compressed_steps"]


def test_iteration_time_skips_wide_over_budget(tmp_path, one_thread):
    exp = ex.get("iteration-time")(wide_widths=(30, 200), reduced_widths=(100,), steps=1, repeats=1,
                                   small_steps=100, wide_budget=1e-9)
    res = exp.run(tmp_path, progress=False, verbose=False)
    assert any("wide and compressed skipped" in line for line in res.log_lines)
    data = np.load(tmp_path / "iteration_time.npz")
    assert list(data["d"]) == [30, 100, 200]
    assert np.isfinite(data["wide_s"][0]) and np.isnan(data["wide_s"][2])
    assert np.isfinite(data["reduced_s"][1])


def test_depth_runs_as_a_sweep(tmp_path, one_thread):
    """``depth`` is a grid of configs for dl.sweep: one row per config, with its per-width errors,
    equal to a single run of that config (the sweep adds nothing of its own)."""
    res = dl.sweep("depth", grid={"lr": [100.0, 150.0]}, out=tmp_path, quick=True, workers=1, progress=False)
    assert res.total == 2 and len(res.rows) == 2 and not res.interrupted
    assert [row["lr"] for row in res.rows] == [100.0, 150.0]
    base = ex.get("depth")().quick()
    for row in res.rows:
        assert row["status"] == "ok" and row["passed"]
        keys = [f"test_rmse_L{L}_w{w}" for L in base.depths for w in base.widths]
        assert all(np.isfinite(row[k]) for k in keys)
    one = dataclasses.replace(base, lr=150.0).run(tmp_path / "one", progress=False, verbose=False)
    assert all(res.rows[1][k] == one.metrics[k] for k in one.metrics if k.startswith("test_rmse"))


def test_collapse_grid_is_a_sweep_of_separation_runs(tmp_path, one_thread):
    """Every cell of the grid is the ``separation`` run of its (ε, L), placed in its cell (rows ε,
    columns L), computed here directly from the public API; a rerun into the same folder reuses
    the finished cells."""
    import deeplinear as dl

    exp = ex.get("collapse-grid")(init_scales=(0.5, 1.0), depths=(3, 4), workers=2)
    res = exp.run(tmp_path / "grid", progress=False, verbose=False)
    assert res.passed, res.format_checks()
    with np.load(tmp_path / "grid" / "grid.npz") as f:
        grid = {k: f[k] for k in f.files}
    for i, eps in enumerate(exp.init_scales):
        for j, L in enumerate(exp.depths):
            prob = dl.problems.orthogonal_classes(5, 10, seed=0)
            net = dl.DeepLinearNetwork(L, dims=[50] * L + [5], init="orthogonal", init_scale=eps, seed=0)
            steps = 0
            while True:
                r = dl.train(net, prob, dl.GD(lr=1.0), 100, progress=False, record_every=100)
                steps += 100
                if r.final_loss < 1e-6 or steps >= exp.max_steps:
                    break
            H = net.features(prob.X)
            D = []
            for h in H:  # tr Σ_W / tr Σ_B from the class means
                mu = h.mean(axis=1, keepdims=True)
                sw = sb = 0.0
                for k in range(5):
                    hk = h[:, prob.labels == k]
                    mk = hk.mean(axis=1, keepdims=True)
                    sw += np.sum((hk - mk) ** 2)
                    sb += hk.shape[1] * np.sum((mk - mu) ** 2)
                D.append(sw / sb)
            slope = np.polyfit(np.arange(len(D)), np.log(D), 1)[0]
            assert grid["steps"][i, j] == steps
            assert abs(grid["ratio"][i, j] - np.exp(slope)) <= 1e-10 * np.exp(slope)
    # the cells' sweep lies beside the run folder (a CLI rerun writes into a fresh run folder)
    cells = sorted(Path(exp.cells_dir(tmp_path / "grid")).glob("*/row.json"))
    assert len(cells) == 4
    stamps = [c.stat().st_mtime_ns for c in cells]
    again = exp.run(tmp_path / "grid", progress=False, verbose=False)  # resumes: nothing to run
    assert again.passed and [c.stat().st_mtime_ns for c in cells] == stamps
    np.testing.assert_array_equal(np.load(tmp_path / "grid" / "grid.npz")["ratio"], grid["ratio"])


def test_paper_target_is_rank_r_with_gaussian_singular_values():
    """The reference code's completion target: rank r, its singular values those of a d × d
    standard normal matrix at indices 0, d/(2r), … (the largest near 2√d)."""
    from deeplinear.experiments.completion import paper_target

    d, r = 200, 5
    phi = paper_target(d, r, np.random.default_rng(3))
    s = np.linalg.svd(phi, compute_uv=False)
    g = np.linalg.svd(np.random.default_rng(3).standard_normal((d, d)), compute_uv=False)
    np.testing.assert_allclose(s[:r], g[[0, 20, 40, 60, 80]], rtol=1e-10)
    assert s[r] < 1e-10 * s[0] and 1.8 * np.sqrt(d) < s[0] < 2.2 * np.sqrt(d)
