"""Initialisation (orthogonal / Gaussian, MATH.md §1) and the DeepLinearNetwork object.

The Haar checks are statistical but deterministic (fixed seeds): each one is also run on a
deliberately wrong sampler (QR without the sign fix) to show that it would catch the bug.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import deeplinear as dl

# -- a Python copy of the core's portable generator (rng.hpp) ---------------------------------------

_MASK = (1 << 64) - 1


class PyRng:
    """xoshiro256** seeded through splitmix64; uniforms on (0, 1] from the top 53 bits; Box–Muller
    normals, both outputs used in order (cos first, then sin)."""

    def __init__(self, seed: int) -> None:
        z = seed
        self.s = []
        for _ in range(4):
            z = (z + 0x9E3779B97F4A7C15) & _MASK
            r = z
            r = ((r ^ (r >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            r = ((r ^ (r >> 27)) * 0x94D049BB133111EB) & _MASK
            self.s.append(r ^ (r >> 31))
        self.spare = None

    @staticmethod
    def _rotl(x: int, k: int) -> int:
        return ((x << k) | (x >> (64 - k))) & _MASK

    def next_u64(self) -> int:
        s = self.s
        result = (self._rotl((s[1] * 5) & _MASK, 7) * 9) & _MASK
        t = (s[1] << 17) & _MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def uniform(self) -> float:
        return ((self.next_u64() >> 11) + 1.0) * 2.0 ** -53

    def normal(self) -> float:
        if self.spare is not None:
            v, self.spare = self.spare, None
            return v
        u1, u2 = self.uniform(), self.uniform()
        radius = math.sqrt(-2.0 * math.log(u1))
        angle = 6.283185307179586476925286766559 * u2
        self.spare = radius * math.sin(angle)
        return radius * math.cos(angle)

    def gaussian_matrix(self, m: int, n: int) -> np.ndarray:
        return np.array([[self.normal() for _ in range(n)] for _ in range(m)])  # row by row


def haar_sign_fixed(g: np.ndarray) -> np.ndarray:
    q, r = np.linalg.qr(g)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def reference_init(dims, init, scale, seed):
    """The documented initialisation, from the documented draw order, in NumPy."""
    rng = PyRng(seed)
    out = []
    for m, n in zip(dims[1:], dims[:-1]):
        if init == "orthogonal":
            k = max(m, n)
            out.append(scale * haar_sign_fixed(rng.gaussian_matrix(k, k))[:m, :n])
        else:
            std = scale * math.sqrt(min(m, n) / (m * n))
            out.append(std * rng.gaussian_matrix(m, n))
    return out


def test_python_rng_matches_core_first_draws():
    # a 1x1 Gaussian layer with unit std is the first normal of the stream
    for seed in (0, 1, 12345, 2**64 - 1):
        net = dl.DeepLinearNetwork(1, dims=[1, 1], init="gaussian", init_scale=1.0, seed=seed)
        assert net.weights[0][0, 0] == PyRng(seed).normal()


@pytest.mark.parametrize("init", ["orthogonal", "gaussian"])
@pytest.mark.parametrize("dims", [[4, 4, 4, 4], [3, 5, 2], [6, 1, 4], [2, 7]])
def test_init_matches_documented_draw_order(init, dims):
    net = dl.DeepLinearNetwork(len(dims) - 1, dims=dims, init=init, init_scale=0.7, seed=42)
    ref = reference_init(dims, init, 0.7, 42)
    for w, r in zip(net.weights, ref):
        assert w.shape == r.shape
        np.testing.assert_allclose(w, r, rtol=0, atol=1e-13)


# -- orthogonal init ---------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [1e-3, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("d", [1, 2, 5, 32])
def test_orthogonal_square_layers(d, eps):
    net = dl.DeepLinearNetwork(3, d, init="orthogonal", init_scale=eps, seed=7)
    for w in net.weights:
        assert w.shape == (d, d) and w.dtype == np.float64
        np.testing.assert_allclose(w.T @ w, eps**2 * np.eye(d), rtol=0, atol=1e-14 * max(1, eps**2) * d)
        np.testing.assert_allclose(w @ w.T, eps**2 * np.eye(d), rtol=0, atol=1e-14 * max(1, eps**2) * d)


def test_orthogonal_rectangular_layers():
    eps = 0.3
    dims = [5, 8, 3, 3, 1, 6]
    net = dl.DeepLinearNetwork(5, dims=dims, init="orthogonal", init_scale=eps, seed=3)
    for w, (m, n) in zip(net.weights, zip(dims[1:], dims[:-1])):
        assert w.shape == (m, n)
        if m <= n:  # orthonormal rows
            np.testing.assert_allclose(w @ w.T, eps**2 * np.eye(m), atol=1e-14)
        if m >= n:  # orthonormal columns
            np.testing.assert_allclose(w.T @ w, eps**2 * np.eye(n), atol=1e-14)
        # singular values all equal eps
        np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), eps, atol=1e-14)


def test_zero_and_negative_scale():
    w0 = dl.DeepLinearNetwork(2, 4, init_scale=0.0, seed=1).weights
    assert all(np.all(w == 0) for w in w0)
    wp = dl.DeepLinearNetwork(2, 4, init_scale=0.5, seed=1).weights
    wn = dl.DeepLinearNetwork(2, 4, init_scale=-0.5, seed=1).weights
    for a, b in zip(wp, wn):
        np.testing.assert_array_equal(a, -b)


@pytest.mark.parametrize("init", ["orthogonal", "gaussian"])
def test_same_seed_same_weights_different_seed_differs(init):
    kw = dict(dims=[4, 6, 5, 4], init=init, init_scale=0.5)
    a = dl.DeepLinearNetwork(3, seed=11, **kw).weights
    b = dl.DeepLinearNetwork(3, seed=11, **kw).weights
    c = dl.DeepLinearNetwork(3, seed=12, **kw).weights
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, z in zip(a, c):
        assert not np.allclose(x, z)
    # layers of one network are different draws, not copies
    sq = dl.DeepLinearNetwork(3, 4, init=init, seed=11).weights
    assert not np.allclose(sq[0], sq[1]) and not np.allclose(sq[1], sq[2])


def test_scale_does_not_change_the_draws():
    a = dl.DeepLinearNetwork(2, 5, init_scale=1.0, seed=9).weights
    b = dl.DeepLinearNetwork(2, 5, init_scale=1e-3, seed=9).weights
    for x, y in zip(a, b):
        np.testing.assert_allclose(1e-3 * x, y, rtol=1e-15, atol=0)


# -- Haar distribution -----------------------------------------------------------------------------

N_HAAR = 600  # matrices per test (depth 4 -> 4 per network)
P_MIN = 1e-3


def _library_sampler(d: int, n: int) -> list[np.ndarray]:
    out = []
    for seed in range(n // 4):
        out.extend(dl.DeepLinearNetwork(4, d, init="orthogonal", init_scale=1.0, seed=seed).weights)
    return out


def _qr_without_sign_fix(d: int, n: int) -> list[np.ndarray]:
    """The classic mistake: Q of a Gaussian matrix's QR, no sign fix (not Haar)."""
    rng = np.random.default_rng(0)
    return [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(n)]


def _haar_reference(d: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [haar_sign_fixed(rng.standard_normal((d, d))) for _ in range(n)]


def _diagonal_pvalues(mats: list[np.ndarray], d: int) -> list[float]:
    """KS p-values of each diagonal entry against its Haar marginal: a coordinate of a uniform
    point on the sphere S^{d-1}, i.e. (x + 1)/2 ~ Beta((d-1)/2, (d-1)/2)."""
    a = (d - 1) / 2
    ps = []
    for j in range(d):
        x = np.array([m[j, j] for m in mats])
        ps.append(stats.kstest((x + 1) / 2, stats.beta(a, a).cdf).pvalue)
    return ps


def _angle_pvalue(mats: list[np.ndarray]) -> float:
    """d = 2: the angle of the first column is uniform on (-pi, pi] under Haar (for rotations and
    reflections alike)."""
    theta = np.array([math.atan2(m[1, 0], m[0, 0]) for m in mats])
    return stats.kstest(theta, stats.uniform(loc=-np.pi, scale=2 * np.pi).cdf).pvalue


def _det_pvalue(mats: list[np.ndarray]) -> float:
    """Determinants +1 and -1 with probability 1/2 each."""
    k = sum(np.linalg.det(m) > 0 for m in mats)
    return stats.binomtest(int(k), len(mats), 0.5).pvalue


def _haar_pvalues(sampler, d: int) -> list[float]:
    mats = sampler(d, N_HAAR)
    for m in mats:
        np.testing.assert_allclose(m.T @ m, np.eye(d), atol=1e-13)
    ps = _diagonal_pvalues(mats, d) + [_det_pvalue(mats)]
    if d == 2:
        ps.append(_angle_pvalue(mats))
    return ps


@pytest.mark.parametrize("d", [2, 3, 4])
def test_orthogonal_init_is_haar(d):
    ps = _haar_pvalues(_library_sampler, d)
    assert min(ps) > P_MIN, ps


@pytest.mark.parametrize("d", [2, 3, 4])
def test_haar_check_accepts_a_correct_numpy_sampler(d):
    assert min(_haar_pvalues(_haar_reference, d)) > P_MIN


@pytest.mark.parametrize("d", [2, 3, 4])
def test_haar_check_catches_missing_sign_fix(d):
    assert min(_haar_pvalues(_qr_without_sign_fix, d)) < P_MIN


def test_haar_check_catches_partial_sign_fix():
    """Subtler bug: the sign fix applied to the first column only."""
    rng = np.random.default_rng(2)

    def sampler(d, n):
        out = []
        for _ in range(n):
            q, r = np.linalg.qr(rng.standard_normal((d, d)))
            q[:, 0] *= np.sign(r[0, 0])
            out.append(q)
        return out

    assert min(_haar_pvalues(sampler, 3)) < P_MIN


def test_rectangular_layer_is_block_of_haar():
    """A 2 x 4 layer: its rows are the first two rows of a 4 x 4 Haar matrix; W[0, 0] then has the
    S^3 coordinate marginal."""
    xs = [dl.DeepLinearNetwork(1, dims=[4, 2], seed=s).weights[0][0, 0] for s in range(N_HAAR)]
    assert stats.kstest((np.array(xs) + 1) / 2, stats.beta(1.5, 1.5).cdf).pvalue > P_MIN


# -- Gaussian init ---------------------------------------------------------------------------------

@pytest.mark.parametrize("m,n", [(300, 200), (200, 300), (250, 250), (1, 4000)])
def test_gaussian_init_std(m, n):
    eps = 2.5
    w = dl.DeepLinearNetwork(1, dims=[n, m], init="gaussian", init_scale=eps, seed=5).weights[0]
    assert w.shape == (m, n)
    std = eps * math.sqrt(min(m, n) / (m * n))
    x = w.ravel() / std
    k = x.size
    assert abs(x.mean()) < 5 / math.sqrt(k)
    assert abs(x.std() - 1) < 5 / math.sqrt(2 * k)
    assert stats.kstest(x, "norm").pvalue > P_MIN


def test_gaussian_init_std_deep():
    eps = 0.1
    dims = [40, 60, 30]
    net = dl.DeepLinearNetwork(2, dims=dims, init="gaussian", init_scale=eps, seed=8)
    for w, (m, n) in zip(net.weights, zip(dims[1:], dims[:-1])):
        std = eps * math.sqrt(min(m, n) / (m * n))
        assert abs(w.std() / std - 1) < 5 / math.sqrt(2 * w.size)


# -- from_weights, weights, copies ------------------------------------------------------------------

def _rand_weights(dims, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((m, n)).astype(dtype) for m, n in zip(dims[1:], dims[:-1])]


def test_from_weights_copies_in():
    ws = _rand_weights([3, 4, 2])
    saved = [w.copy() for w in ws]
    net = dl.DeepLinearNetwork.from_weights(ws)
    ws[0][:] = 99.0
    ws[1][0, 0] = np.nan
    for w, s in zip(net.weights, saved):
        np.testing.assert_array_equal(w, s)


def test_weights_are_copies_out():
    net = dl.DeepLinearNetwork(2, 3, seed=0)
    before = [w.copy() for w in net.weights]
    ws = net.weights
    for w in ws:
        w *= 0
        w += 5
    w1 = net.weight(1)
    w1[:] = -1
    e = net.end_to_end()
    e[:] = 0
    for w, b in zip(net.weights, before):
        np.testing.assert_array_equal(w, b)
    np.testing.assert_allclose(net.end_to_end(), before[1] @ before[0], rtol=0, atol=1e-15)


def test_weights_are_fresh_owned_arrays():
    net = dl.DeepLinearNetwork(2, 3, seed=0)
    a, b = net.weights, net.weights
    for x, y in zip(a, b):
        assert not np.shares_memory(x, y)
        assert x.flags.c_contiguous and x.flags.writeable


def test_from_weights_round_trip_and_weight_accessor():
    ws = _rand_weights([5, 3, 4, 2], seed=1)
    net = dl.DeepLinearNetwork.from_weights(ws)
    assert net.depth == 3 and net.dims == (5, 3, 4, 2)
    assert net.init == "given" and net.seed is None and math.isnan(net.init_scale)
    for i, w in enumerate(ws, start=1):
        np.testing.assert_array_equal(net.weight(i), w)
        np.testing.assert_array_equal(net.weights[i - 1], w)


def test_copy_is_independent():
    net = dl.DeepLinearNetwork(2, 4, init_scale=0.5, seed=3)
    cp = net.copy()
    assert (cp.init, cp.init_scale, cp.seed) == ("orthogonal", 0.5, 3)
    prob = dl.problems.factorization(4, 1, seed=0)
    dl.train(cp, prob, dl.GD(lr=0.5), steps=5, progress=False)
    ref = dl.DeepLinearNetwork(2, 4, init_scale=0.5, seed=3)
    for a, b, c in zip(net.weights, ref.weights, cp.weights):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("dims", [[4, 4], [3, 5, 2], [6, 2, 7, 1, 3], [1, 8, 1]])
def test_end_to_end_equals_numpy_product(dims):
    ws = _rand_weights(dims, seed=4)
    net = dl.DeepLinearNetwork.from_weights(ws)
    ref = ws[0]
    for w in ws[1:]:
        ref = w @ ref
    e = net.end_to_end()
    assert e.shape == (dims[-1], dims[0]) and e.dtype == np.float64
    np.testing.assert_allclose(e, ref, rtol=1e-13, atol=1e-13)


def test_end_to_end_orthogonal_init_is_scaled_orthogonal():
    net = dl.DeepLinearNetwork(4, 6, init_scale=0.5, seed=2)
    e = net.end_to_end()
    np.testing.assert_allclose(e.T @ e, 0.5**8 * np.eye(6), atol=1e-15)


# -- float32 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("init", ["orthogonal", "gaussian"])
def test_float32_network_is_the_float64_init_rounded(init):
    kw = dict(dims=[4, 6, 3], init=init, init_scale=0.8, seed=21)
    n32 = dl.DeepLinearNetwork(2, dtype=np.float32, **kw)
    n64 = dl.DeepLinearNetwork(2, **kw)
    assert n32.dtype == np.float32 and n64.dtype == np.float64
    for a, b in zip(n32.weights, n64.weights):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b.astype(np.float32))
    e = n32.end_to_end()
    assert e.dtype == np.float32
    np.testing.assert_allclose(e, n64.end_to_end(), rtol=1e-5, atol=1e-6)


def test_float32_from_weights_and_dtype_argument():
    ws32 = _rand_weights([3, 3, 3], dtype=np.float32)
    net = dl.DeepLinearNetwork.from_weights(ws32)
    assert net.dtype == np.float32
    for a, b in zip(net.weights, ws32):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    ws64 = _rand_weights([3, 3, 3])
    net = dl.DeepLinearNetwork.from_weights(ws64, dtype="float32")
    assert net.dtype == np.float32
    np.testing.assert_array_equal(net.weights[0], ws64[0].astype(np.float32))
    # mixed dtypes are accepted with an explicit dtype=
    net = dl.DeepLinearNetwork.from_weights([ws32[0], ws64[1]], dtype=np.float64)
    assert net.dtype == np.float64
    np.testing.assert_array_equal(net.weights[0], ws32[0].astype(np.float64))


def test_float32_copy_keeps_dtype():
    net = dl.DeepLinearNetwork(2, 3, dtype=np.float32, seed=1)
    assert net.copy().dtype == np.float32


# -- dims, depth, repr, describe ---------------------------------------------------------------------

def test_dims_and_depth():
    net = dl.DeepLinearNetwork(3, 7)
    assert net.dims == (7, 7, 7, 7) and net.depth == 3 and isinstance(net.dims, tuple)
    net = dl.DeepLinearNetwork(2, dims=[5, 3, 9])
    assert net.dims == (5, 3, 9) and net.depth == 2
    assert [w.shape for w in net.weights] == [(3, 5), (9, 3)]
    net = dl.DeepLinearNetwork(2, dims=(np.int64(2), np.int32(3), 4))
    assert net.dims == (2, 3, 4)


def test_repr():
    assert repr(dl.DeepLinearNetwork(3, 7)) == (
        "DeepLinearNetwork(depth=3, width=7, init='orthogonal', dtype=float64)")
    assert repr(dl.DeepLinearNetwork(2, dims=[5, 3, 9], init="gaussian", dtype=np.float32)) == (
        "DeepLinearNetwork(depth=2, dims=[5, 3, 9], init='gaussian', dtype=float32)")
    assert repr(dl.DeepLinearNetwork.from_weights(_rand_weights([2, 2]))) == (
        "DeepLinearNetwork(depth=1, width=2, init='given', dtype=float64)")


def test_describe():
    d = dl.DeepLinearNetwork(2, dims=[3, 4, 5], init="gaussian", init_scale=0.25, seed=6).describe()
    assert d == {"depth": 2, "dims": [3, 4, 5], "init": "gaussian", "init_scale": 0.25,
                 "seed": 6, "dtype": "float64"}
