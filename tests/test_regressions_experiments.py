"""Regressions of the CLI/experiments audit (findings 4, 5, 6, 7 and 11): each test fails on the
code before the fix.  Tiny configs, one core thread."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import deeplinear as dl
from deeplinear import cli
from deeplinear import experiments as ex

FAST = ["--no-progress", "--quiet", "--threads", "1"]


def _quiet_run(exp, out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dl.DivergenceWarning)
        return exp.run(out, progress=False, verbose=False)


# -- finding 4: optimizers must not pass when its runs diverge or blow up ---------------------------

def test_optimizers_diverged_runs_are_reported_diverged_and_fail(tmp_path, one_thread):
    """lr = 50: GD, heavy ball and Nesterov diverge within a few steps.  Before: 4/4 PASS, "ok",
    exit 0 (the residual was only sampled at step 0).  Now: status "diverged", their residual
    checks fail, and each run is saved as a training result."""
    res = _quiet_run(ex.get("optimizers")().quick().replace(lr=50.0), tmp_path)
    assert res.status == "diverged" and not res.passed
    by_name = {c.name: c for c in res.checks}
    for n in ("GD", "heavy ball", "Nesterov"):
        assert not by_name[f"max structure residual, {n}"].passed
        assert not by_name[f"final loss / initial loss, {n}"].passed
        assert res.metrics[f"{n.lower().replace(' ', '_')}_status"] == "diverged"
    assert by_name["final loss / initial loss, Adam"].passed
    assert dl.Result.load(tmp_path / "gd.npz").status == "diverged"
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "diverged"
    # the residual records reach the step the diverged run stopped at, not only step 0
    with np.load(tmp_path / "optimizers.npz") as z:
        assert z["gd_structure_steps"][-1] == res.metrics["gd_steps"] > 0


def test_optimizers_blow_up_to_finite_losses_fails(tmp_path, one_thread):
    """Two steps at lr = 50: the losses grow to ~1e63 but stay finite (status "max_steps"), the
    structure is kept to round-off.  The run did not train: a check must fail."""
    res = _quiet_run(ex.get("optimizers")().quick().replace(lr=50.0, steps=2, every=1), tmp_path)
    assert res.status == "failed"
    failed = {c.name for c in res.checks if not c.passed}
    assert {"final loss / initial loss, GD", "final loss / initial loss, heavy ball",
            "final loss / initial loss, Nesterov"} <= failed


def test_optimizers_cli_exit_status_when_diverged(tmp_path, one_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dl.DivergenceWarning)
        assert cli.main(["run", "optimizers", "--quick", "--set", "lr=50", "--out", tmp_path, *FAST]) == 1


def test_structure_history_records_the_last_step_of_a_diverged_run(one_thread):
    from deeplinear.experiments.optimizers import structure_history

    rng = np.random.default_rng(0)
    phi = dl.problems.low_rank_target(8, 2, rng)
    phi /= np.linalg.norm(phi, 2)
    prob = dl.Factorization(phi, reduction="sum")
    net = dl.DeepLinearNetwork(3, 8, init="orthogonal", seed=0)
    basis = dl.invariant_basis(net, prob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dl.DivergenceWarning)
        r, st, resid = structure_history(net, prob, dl.GD(lr=50.0), 100, 40, basis)
    assert r.status == "diverged" and 0 < r.n_steps < 40
    assert list(st) == [0, r.n_steps] and len(resid) == 2


# -- finding 5: factorization's bulk is the d − 2r values closest to |ρ(T)| --------------------------

@pytest.mark.parametrize("width,rank", [(4, 1), (8, 2), (10, 3), (12, 4), (14, 4)])
def test_factorization_bulk_check_passes_when_the_bulk_is_not_a_majority(width, rank, tmp_path, one_thread):
    """d ≲ 4r: the median of the singular values lies between the bulk and the learning values.
    Before: FAILED (spread 1e-3 .. 0.2) although the d − 2r smallest equal |ρ(T)| to 1e-15."""
    res = ex.get("factorization")().quick().replace(width=width, rank=rank).run(
        tmp_path, progress=False, verbose=False)
    assert res.passed, res.format_checks()
    s = np.load(tmp_path / "singular_values_layer1.npz")["singular_values"][-1]
    lr = dl.Result.load(tmp_path / "training.npz").meta["optimizer"]["lr"]
    rho = abs(dl.rho_schedule(1.0, lr, 3, 500, reduction_constant=1.0 / width ** 2)[-1])
    assert np.sort(np.abs(s - rho))[width - 2 * rank - 1] <= 1e-13
    assert res.metrics["bulk_rho"] == pytest.approx(rho, rel=1e-14)
    assert res.checks[-1].value <= 1e-12


def test_factorization_bulk_check_still_fails_with_adam(tmp_path, monkeypatch, one_thread):
    """Adam breaks the law of parsimony: the bulk check must fail (as before the fix)."""
    import deeplinear.experiments.factorization as F

    class AdamForGD:
        def __getattr__(self, name):
            return (lambda lr: dl.Adam(lr=1e-2)) if name == "GD" else getattr(dl, name)

    monkeypatch.setattr(F, "dl", AdamForGD())
    res = F.FactorizationExperiment().quick().replace(width=30, rank=3).run(tmp_path, progress=False,
                                                                           verbose=False)
    assert res.status == "failed"
    assert not res.checks[-1].passed and res.checks[-1].value > 1e-3


# -- finding 6: bad values are usage errors (exit 2), before any run ---------------------------------

@pytest.mark.parametrize("name,setting", [
    ("depth", "widths="), ("depth", "widths=10,-5"), ("depth", "depths="),
    ("equivalence", "tol=0"),
    ("iteration-time", "wide_widths=-3"), ("iteration-time", "wide_widths="),
    ("iteration-time", "reduced_widths=5"),
    ("completion", "alphas=0.5"),
    ("optimizers", "rank=10"), ("nonwhitened", "samples=5"), ("collapse-grid", "depths=4,1"),
])
def test_bad_values_are_usage_errors_before_any_run(name, setting, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", name, "--quick", "--set", setting, "--out", tmp_path / "out", *FAST])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert setting.split("=")[0] in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name,changes", [
    ("depth", {"widths": ()}), ("depth", {"widths": (10, -5)}), ("equivalence", {"tol": 0.0}),
    ("iteration-time", {"wide_widths": (-3,)}), ("completion", {"alphas": (0.5,)}),
])
def test_bad_values_are_config_errors(name, changes):
    with pytest.raises(ex.ConfigError, match=next(iter(changes))):
        ex.get(name)().quick().replace(**changes)


# -- finding 7: collapse-grid resumes when the same command is rerun ---------------------------------

def test_collapse_grid_rerun_of_the_same_command_resumes(tmp_path, one_thread):
    """`deeplinear run` writes into a fresh OUT/collapse-grid-TIMESTAMP each time; the cells'
    sweep must be found again by a rerun with the same --out (before: one cells/ per run folder,
    every cell recomputed)."""
    args = ["run", "collapse-grid", "--quick", "--set", "init_scales=0.5", "--set", "depths=3,4",
            "--set", "workers=1", "--out", tmp_path, *FAST]
    assert cli.main(args) == 0
    cells_dirs = sorted(tmp_path.glob("collapse-grid-cells-*"))
    assert len(cells_dirs) == 1
    rows = sorted(cells_dirs[0].glob("*/row.json"))
    assert len(rows) == 2
    stamps = [p.stat().st_mtime_ns for p in rows]
    assert cli.main(args) == 0  # the same command again: nothing to run
    assert sorted(tmp_path.glob("collapse-grid-cells-*")) == cells_dirs
    assert [p.stat().st_mtime_ns for p in rows] == stamps
    runs = sorted(p for p in tmp_path.glob("collapse-grid-2*") if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        files = json.loads((run / "result.json").read_text())["files"]
        listed = [f for f in files if f.endswith("sweep.csv")]
        assert listed and (run / listed[0]).resolve() == (cells_dirs[0] / "sweep.csv").resolve()
    # workers does not change the numbers, so not the folder either
    exp = ex.get("collapse-grid")().quick().replace(init_scales=(0.5,), depths=(3, 4), workers=1)
    assert exp.cells_dir(runs[0]) == exp.replace(workers=2).cells_dir(runs[1]) == str(cells_dirs[0])


# -- finding 11: equivalence honors steps=N; completion never ends with no checks --------------------

def test_equivalence_runs_the_wide_network_for_exactly_the_steps_asked(tmp_path, one_thread):
    """--quick's compressed run reaches tol in 8117 steps; steps=8600 used to be capped there."""
    exp = ex.get("equivalence")().quick().replace(steps=8600, records=3, samples=20)
    res = exp.run(tmp_path, progress=False, verbose=False)
    assert res.passed, res.format_checks()
    assert res.metrics["compressed_steps"] < 8600
    assert res.metrics["wide_steps"] == 8600
    with np.load(tmp_path / "equivalence.npz") as z:
        assert len(z["wide_loss"]) == 8601 and z["compressed_steps"][-1] == 8600
        assert len(z["compressed_loss"]) == len(z["compressed_steps"])


def test_completion_without_alpha_001_is_refused(tmp_path):
    """alphas=0.5 left no check at all and reported OK (0/0 checks)."""
    with pytest.raises(ex.ConfigError, match="alphas"):
        ex.get("completion")().quick().replace(alphas=(0.5,))
    exp = ex.get("completion")().quick().replace(alphas=(0.01,))  # still allowed: one check
    assert exp.alphas == (0.01,)
