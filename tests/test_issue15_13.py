"""Issue 15, finding 13: every keyword of ``train`` is validated whether or not it is used;
an option given without the option it belongs to is refused; ``callback=5`` and
``track="bogus"`` on a compressed network are refused."""

from __future__ import annotations

import pytest

import deeplinear as dl


def wide():
    return dl.DeepLinearNetwork(3, 12, init_scale=0.5, seed=0), dl.problems.factorization(12, 2, seed=0)


def compressed():
    net, prob = wide()
    return dl.compress(net, prob), prob


@pytest.mark.parametrize("make", [wide, compressed], ids=["wide", "compressed"])
@pytest.mark.parametrize("kw, exc, match", [
    ({"callback_every": 5}, ValueError, "^callback_every: given without callback"),
    ({"checkpoint_every": 5}, ValueError, "^checkpoint_every: given without checkpoint"),
    ({"callback_every": 0, "callback": print}, ValueError, "^callback_every"),
    ({"callback": 5}, TypeError, "^callback"),
    ({"track": "bogus"}, ValueError, "^track"),
    ({"track": 3}, TypeError, "^track"),
    ({"checkpoint": 3.5}, TypeError, "^checkpoint"),
    ({"progress": "yes"}, TypeError, "^progress"),
    ({"tol": -1.0}, ValueError, "^tol"),
    ({"on_divergence": "ignore"}, ValueError, "^on_divergence"),
])
def test_keyword_validated_whether_or_not_used(make, kw, exc, match):
    net, prob = make()
    with pytest.raises(exc, match=match):
        dl.train(net, prob, dl.GD(lr=0.1), 5, **kw)


@pytest.mark.parametrize("kw, match", [
    ({"every": 0}, "^every"), ({"k": 0}, "^k"),
    ({"tol": 1e-8}, "^tol: applies to incremental"), ({"max_iter": 3}, "^max_iter: applies to incremental"),
    ({"verify_every": 2}, "^verify_every: applies to structured")])
def test_tracking_options_belong_to_their_mode(kw, match):
    with pytest.raises(ValueError, match=match):
        dl.Tracking("full", **kw)


def test_old_flat_tracking_keywords_are_gone():
    net, prob = wide()
    with pytest.raises(TypeError, match="track_k"):
        dl.train(net, prob, dl.GD(lr=0.1), 5, track_k=3)
