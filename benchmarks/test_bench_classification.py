"""One GD step of depth-8 classification at width 1000 on 10,000 samples (MATH.md §5), linear
and ReLU: deeplinear against the same step in NumPy and, when it is importable, PyTorch (CPU,
autograd, same thread count).  Correctness first (the first step of each against NumPy from the
same weights), then interleaved rounds; the ratios use the best time of each over the rounds.
With ``--benchmark-disable`` one round runs (the correctness checks)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import deeplinear as dl
from benchlib import ASSERT_TARGETS, rel

DEPTH, WIDTH, SAMPLES, CLASSES = 8, 1000, 10_000, 10
LR = 500.0  # c = 1/(K n) = 1e-5: an update of ~1e-3 relative, well measurable
ROUNDS = 3
PAUSE = 0.2  # seconds before each timed part: the other library's BLAS threads stop spinning


class NumpyClassificationStep:
    """H_0 = X, H_l = σ(W_l H_{l−1}) (l < L), out = W_L H_{L−1}; R = c (out − Y);
    S_L = R, S_{l−1} = (W_lᵀ S_l) ⊙ 1[H_{l−1} > 0]; W_l −= lr S_l H_{l−1}ᵀ, layer L first.
    Buffers preallocated; ``step()`` returns the loss before the update."""

    def __init__(self, weights, X, Y, c, lr, relu):
        self.W = [np.array(w, order="C") for w in weights]
        self.X, self.Y, self.c, self.lr, self.relu = X, Y, c, lr, relu
        n = X.shape[1]
        self.H = [X] + [np.empty((w.shape[0], n)) for w in self.W]
        self.S = [None] + [np.empty((w.shape[0], n)) for w in self.W]

    def step(self) -> float:
        W, H, S = self.W, self.H, self.S
        L = len(W)
        for l in range(1, L + 1):
            np.matmul(W[l - 1], H[l - 1], out=H[l])
            if self.relu and l < L:
                np.maximum(H[l], 0.0, out=H[l])
        R = S[L]
        np.subtract(H[L], self.Y, out=R)
        loss = 0.5 * self.c * float(np.vdot(R, R))
        R *= self.c
        for l in range(L, 0, -1):
            if l > 1:
                np.matmul(W[l - 1].T, S[l], out=S[l - 1])
                if self.relu:
                    S[l - 1] *= H[l - 1] > 0
            W[l - 1] -= self.lr * (S[l] @ H[l - 1].T)
        return loss


class TorchClassificationStep:
    """The same step with PyTorch autograd (float64, CPU)."""

    def __init__(self, torch, weights, X, Y, c, lr, relu):
        self.torch = torch
        self.W = [torch.tensor(w, requires_grad=True) for w in weights]
        self.X, self.Y = torch.tensor(X), torch.tensor(Y)  # copies: the problem's arrays are read-only
        self.c, self.lr, self.relu = c, lr, relu

    def step(self) -> float:
        torch = self.torch
        h = self.X
        for w in self.W[:-1]:
            h = w @ h
            if self.relu:
                h = torch.relu(h)
        loss = 0.5 * self.c * ((self.W[-1] @ h - self.Y) ** 2).sum()
        loss.backward()
        with torch.no_grad():
            for w in self.W:
                w -= self.lr * w.grad
                w.grad = None
        return float(loss.detach())


_DATA: dict = {}


def data():
    if not _DATA:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((WIDTH, SAMPLES)) / np.sqrt(WIDTH)
        prob = dl.Classification(X, rng.integers(0, CLASSES, SAMPLES))
        dims = [WIDTH] * DEPTH + [CLASSES]
        w0 = dl.DeepLinearNetwork(DEPTH, dims=dims, init="orthogonal", init_scale=1.0, seed=0).weights
        _DATA.update(prob=prob, w0=w0, dims=dims)
    return _DATA


def _torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(dl.get_num_threads())
    return torch


@pytest.mark.parametrize("activation", [None, "relu"], ids=["linear", "relu"])
def test_classification_step(benchmark, activation):
    d = data()
    prob, w0 = d["prob"], d["w0"]
    relu = activation == "relu"
    net = dl.DeepLinearNetwork.from_weights(w0, activation=activation)
    # the core trainer directly: dl.train would add its own per-call bookkeeping to each step
    a, b = prob._core_args(net.dtype)
    trainer = dl._core.Trainer64(net._writable_core(), prob.kind, a, b, prob.c, dl.GD(lr=LR)._config(), 1, -1.0, 0)
    ref = NumpyClassificationStep(w0, prob.X, prob.Y, prob.c, LR, relu)
    torch = _torch()
    tstep = None if torch is None else TorchClassificationStep(torch, w0, prob.X, prob.Y, prob.c, LR, relu)
    parts = {"deeplinear": lambda: trainer.run(1), "numpy": ref.step}
    if tstep is not None:
        parts["torch"] = tstep.step
    times: dict = {name: [] for name in parts}
    out: dict = {}

    def one_round():
        for name, f in parts.items():
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            out[name] = f()
            times[name].append(time.perf_counter() - t0)
        if len(times["numpy"]) == 1:  # correctness of the first step, before any timing counts
            assert trainer.step == 1
            assert abs(trainer.history()["train_loss"][0] - out["numpy"]) <= 1e-12 * out["numpy"]
            w_dl = net.weights
            upd = max(rel(a - w, b - w) for a, b, w in zip(w_dl, ref.W, w0))
            assert upd <= 1e-8, upd  # relative error of the update (sums of 10,000 products)
            assert max(rel(a, b) for a, b in zip(w_dl, ref.W)) <= 1e-12
            assert min(rel(b, w) for b, w in zip(ref.W, w0)) > 1e-4  # a visible update
            if tstep is not None:
                assert abs(out["torch"] - out["numpy"]) <= 1e-12 * out["numpy"]
                assert max(rel(t.detach().numpy(), b) for t, b in zip(tstep.W, ref.W)) <= 1e-12

    benchmark.group = f"classification step depth {DEPTH} width {WIDTH} n {SAMPLES} {activation or 'linear'}"
    benchmark.pedantic(one_round, rounds=1 if benchmark.disabled else ROUNDS, iterations=1)
    if benchmark.disabled:
        return
    best = {name: min(ts) for name, ts in times.items()}
    ratios = {f"deeplinear/{k}": best["deeplinear"] / best[k] for k in best if k != "deeplinear"}
    benchmark.extra_info.update({"best_s": best, **ratios})
    print(f"\n  classification {activation or 'linear'} (best of {ROUNDS}, s): "
          + ", ".join(f"{k} {v:.3f}" for k, v in best.items()) + "; "
          + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    if ASSERT_TARGETS:
        assert all(v <= 1.0 for v in ratios.values()), ratios
