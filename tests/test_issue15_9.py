"""Issue 15, finding 9: huge step budgets and integers past 64 bits.

A budget that a tol ends at once runs (the history is sized by the records made, not reserved
for every step); integers beyond what the core holds give a ValueError naming the argument."""

import numpy as np
import pytest

import deeplinear as dl

BIG = 2**70


def _pair():
    return dl.DeepLinearNetwork(2, 5, seed=0), dl.problems.factorization(5, 1, seed=0)


@pytest.mark.parametrize("steps", [10**9, 2**62])
def test_huge_budget_with_tol_met_converges_at_once(steps):
    net, prob = _pair()
    loss0 = prob.loss(net.end_to_end())
    res = dl.train(net, prob, dl.GD(lr=0.1), steps, tol=1e9, progress=False)
    assert res.status == "converged" and res.n_steps == 0
    np.testing.assert_allclose(res.train_loss, [loss0], rtol=1e-12)


def test_huge_record_every_records_first_and_last():
    net, prob = _pair()
    res = dl.train(net, prob, dl.GD(lr=0.1), 3, record_every=2**62, progress=False)
    assert res.steps.tolist() == [0, 3]


@pytest.mark.parametrize("mode, name", [("incremental", "every"), ("incremental", "k"),
                                        ("incremental", "max_iter"), ("structured", "verify_every")])
def test_tracking_integer_past_64_bits_names_it(mode, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        dl.Tracking(mode, **{name: BIG})


@pytest.mark.parametrize("name", ["steps", "record_every", "callback_every", "checkpoint_every"])
def test_train_integer_past_64_bits_names_it(name, tmp_path):
    net, prob = _pair()
    kw = {"steps": 3, "progress": False}
    if name == "callback_every":
        kw["callback"] = lambda step, net: None
    if name == "checkpoint_every":
        kw["checkpoint"] = tmp_path / "c.npz"
    kw[name] = BIG
    with pytest.raises(ValueError, match=f"^{name}: "):
        dl.train(net, prob, dl.GD(lr=0.1), **kw)
    assert not (tmp_path / "c.npz").exists()


def test_set_num_threads_past_64_bits_names_threads():
    before = dl.get_num_threads()
    with pytest.raises(ValueError, match="^threads: "):
        dl.set_num_threads(BIG)
    assert dl.get_num_threads() == before


@pytest.mark.parametrize("arg", ["width", "depth"])
def test_reduced_network_past_64_bits_names_it(arg):
    kw = {"width": 10, "depth": 2, arg: BIG}
    with pytest.raises(ValueError, match=f"^{arg}: "):
        dl.compression.reduced_network(spectrum=[1.0], **kw)


@pytest.mark.parametrize("kw,name", [({"width": BIG}, "width"), ({"dims": [2, BIG, 2]}, "dims")])
def test_network_sizes_past_64_bits_name_them(kw, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        dl.DeepLinearNetwork(2, **kw)
