"""Issue 15, finding 10: reading the wrong file as a checkpoint or a Result gives a ValueError
naming the argument; a checkpoint path in a missing folder is refused before training; two
Results compare without an exception."""

import json
import os

import numpy as np
import pytest

import deeplinear as dl


def _run(**kw):
    net = dl.DeepLinearNetwork(2, 5, seed=0)
    return net, dl.train(net, dl.problems.factorization(5, 1, seed=0), dl.GD(lr=0.1), 3, progress=False, **kw)


def _write_bad(kind, path):
    if kind == "plain_npz":
        np.savez(path, a=np.ones(3))
    elif kind == "npy":
        with open(path, "wb") as fh:
            np.save(fh, np.ones(3))
    elif kind == "corrupt_zip":
        with open(path, "wb") as fh:
            fh.write(b"PK\x03\x04" + b"garbage" * 20)
    elif kind == "bad_header":
        np.savez(path, __header__=np.array("{not json"))
    elif kind == "header_not_a_dict":
        np.savez(path, __header__=np.array(json.dumps([1, 2])))
    elif kind == "empty":
        open(path, "wb").close()
    elif kind == "truncated":
        _, res = _run()
        res.save(path)
        data = path.read_bytes()
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
    elif kind == "truncated_checkpoint":
        _run(checkpoint=path)
        data = path.read_bytes()
        with open(path, "wb") as fh:
            fh.write(data[: len(data) - 200])


KINDS = ["plain_npz", "npy", "corrupt_zip", "bad_header", "header_not_a_dict", "empty", "truncated",
         "truncated_checkpoint"]


@pytest.mark.parametrize("kind", KINDS)
def test_result_load_of_a_wrong_file_names_path(kind, tmp_path):
    path = tmp_path / "r.npz"
    _write_bad(kind, path)
    with pytest.raises(ValueError, match="^path: "):
        dl.Result.load(path)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_of_a_wrong_file_names_checkpoint(kind, tmp_path):
    path = tmp_path / "c.npz"
    _write_bad(kind, path)
    before = path.read_bytes()
    net = dl.DeepLinearNetwork(2, 5, seed=0)
    w0 = net.weights
    with pytest.raises(ValueError, match="^checkpoint: "):
        dl.train(net, dl.problems.factorization(5, 1, seed=0), dl.GD(lr=0.1), 3, progress=False,
                 checkpoint=path)
    # nothing was done: the network and the file are untouched
    assert all(np.array_equal(a, b) for a, b in zip(w0, net.weights))
    assert path.read_bytes() == before


def test_checkpoint_in_a_missing_folder_is_refused_before_training(tmp_path):
    net = dl.DeepLinearNetwork(2, 5, seed=0)
    w0 = net.weights
    calls = []
    with pytest.raises(ValueError, match="^checkpoint: .*does not exist"):
        dl.train(net, dl.problems.factorization(5, 1, seed=0), dl.GD(lr=0.1), 3, progress=False,
                 checkpoint=tmp_path / "missing" / "c.npz", callback=lambda s, n: calls.append(s))
    assert calls == []
    assert all(np.array_equal(a, b) for a, b in zip(w0, net.weights))


def test_checkpoint_path_that_is_a_folder_is_refused(tmp_path):
    net = dl.DeepLinearNetwork(2, 5, seed=0)
    with pytest.raises(ValueError, match="^checkpoint: .*folder"):
        dl.train(net, dl.problems.factorization(5, 1, seed=0), dl.GD(lr=0.1), 3, progress=False,
                 checkpoint=tmp_path)


def test_result_save_in_a_missing_folder_names_path(tmp_path):
    _, res = _run()
    with pytest.raises(ValueError, match="^path: .*does not exist"):
        res.save(tmp_path / "missing" / "r.npz")
    assert os.listdir(tmp_path) == []


def test_results_compare_without_exception():
    _, a = _run()
    _, b = _run()
    assert a == a
    assert (a == b) is False and (a != b) is True
    assert a in [b, a]
