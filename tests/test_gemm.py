"""The core's matrix product (cpp/include/deeplinear/gemm.hpp) against NumPy.

Every training step goes through ``deeplinear::gemm``: C = alpha op(A) op(B) + beta C.  Small
double products (the 2r x 2r factors of a compressed network: n <= 32 columns, m, k <= 64) take
a register-blocked kernel where the build targets AVX-512 (row blocks of 1-7, full, masked and
half-width column tails) or AVX2 + FMA (row blocks of 1-8, 1-7 vectors of 4 columns, n % 4 != 0
through a padded copy of B and masked stores, n > 28 as two panels), A Bᵀ with small B a
transpose on the stack, the rest BLAS.  The shapes below cross every one of those boundaries,
each layout, and beta = 0 (C must not be read: it holds NaN), 1 and another value.

Every test here runs on every BLAS library the core can be bound to (deeplinear._loader):
NumPy's own OpenBLAS (shared, ILP64 in NumPy's wheels), the bundled scipy-openblas32 (the
fallback, forced) and MKL (libmkl_rt of the ``mkl`` package; skipped when not installed).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deeplinear import _core, _loader


@pytest.fixture(autouse=True, params=["numpy", "bundled", "mkl"])
def blas_library(request):
    """Bind the core to each library in turn; back to the import-time choice afterwards."""
    default = dict(_core.build_info()).get("blas_source", "eigen")
    got = _loader.bind_blas(request.param)
    if request.param != got:
        reason = _core.build_info().get("blas_reason")
        _loader.bind_blas(default if default in ("numpy", "bundled", "mkl") else "numpy")
        pytest.skip(f"the core cannot use {request.param} here: {reason}")
    yield got
    _loader.bind_blas(default if default in ("numpy", "bundled", "mkl") else "numpy")

SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 19, 20, 21, 23, 24, 25, 28, 29, 30, 31, 32, 33, 40, 63, 64, 65]


def _product(m, k, n, trans_a, trans_b, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    c0 = np.full((m, n), np.nan) if beta == 0.0 else rng.standard_normal((m, n))
    c = c0.copy()
    _core._gemm64(c, a, trans_a, b, trans_b, alpha, beta)
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    expect = alpha * (opa @ opb) + (0.0 if beta == 0.0 else beta * c0)
    return c, expect


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.75])
def test_gemm_matches_numpy_over_the_kernel_boundaries(trans_a, trans_b, beta):
    worst = 0.0
    for i, (m, n) in enumerate(itertools.product(SIZES, SIZES)):
        k = SIZES[(3 * i + 5) % len(SIZES)]  # every depth, paired with varying m, n
        c, expect = _product(m, k, n, trans_a, trans_b, -1.5, beta, seed=i)
        assert np.all(np.isfinite(c)), (m, k, n)
        scale = max(np.abs(expect).max(), 1.0)
        worst = max(worst, float(np.abs(c - expect).max() / scale))
        assert np.abs(c - expect).max() <= 1e-13 * scale * max(k, 1), (m, k, n, trans_a, trans_b, beta)
    assert worst < 1e-12


@pytest.mark.parametrize("m, k, n", [(20, 20, 20), (10, 10, 10), (6, 6, 6), (64, 64, 32), (1, 64, 1)])
def test_gemm_square_factor_sizes_every_depth_and_layout(m, k, n):
    """The sizes of compressed networks (2r x 2r), all layouts, beta 0 and 1."""
    for trans_a, trans_b, beta in itertools.product([False, True], [False, True], [0.0, 1.0]):
        c, expect = _product(m, k, n, trans_a, trans_b, 0.3, beta, seed=m * 1000 + n)
        np.testing.assert_allclose(c, expect, rtol=0, atol=1e-13 * max(np.abs(expect).max(), 1.0) * k)


def test_gemm_empty_inner_dimension():
    """k = 0: the product is zero, C becomes beta C."""
    c0 = np.arange(12.0).reshape(3, 4)
    for beta in (0.0, 1.0, 2.0):
        c = c0.copy()
        _core._gemm64(c, np.empty((3, 0)), False, np.empty((0, 4)), False, 1.0, beta)
        np.testing.assert_array_equal(c, beta * c0)


def test_gemm_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="b"):
        _core._gemm64(np.zeros((2, 2)), np.zeros((2, 3)), False, np.zeros((2, 2)), False, 1.0, 0.0)
    with pytest.raises(ValueError, match="c"):
        _core._gemm64(np.zeros((2, 3)), np.zeros((2, 3)), False, np.zeros((3, 2)), False, 1.0, 0.0)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wide_products_every_layout(trans_a, trans_b, dtype):
    """Products beyond the small kernels (BLAS's own blocking; the training step's d x d shapes,
    here 150 x 130 x 170): every layout, through gemm (float64) and Eigen's product (matmul)."""
    rng = np.random.default_rng(7)
    m, k, n = 150, 130, 170
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    if dtype == np.float64:
        c0 = rng.standard_normal((m, n))
        c = c0.copy()
        _core._gemm64(c, a, trans_a, b, trans_b, 0.5, 0.25)
        np.testing.assert_allclose(c, 0.5 * (opa @ opb) + 0.25 * c0, rtol=0, atol=1e-12 * k)
    a32 = np.ascontiguousarray(opa, dtype=dtype)
    b32 = np.ascontiguousarray(opb, dtype=dtype)
    out = np.empty((m, n), dtype=dtype)
    getattr(_core, "matmul64" if dtype == np.float64 else "matmul32")(a32, b32, out)
    tol = (1e-12 if dtype == np.float64 else 2e-5) * k
    np.testing.assert_allclose(out, a32.astype(np.float64) @ b32.astype(np.float64), rtol=0, atol=tol)


@pytest.mark.parametrize("shape", [((300, 200), (200, 1)), ((1, 200), (200, 300))])
def test_matrix_vector_products(shape):
    """Eigen evaluates a product with one column (or row) as a matrix-vector product (BLAS gemv)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape[0])
    b = rng.standard_normal(shape[1])
    out = np.empty((a.shape[0], b.shape[1]))
    _core.matmul64(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=0, atol=1e-12 * a.shape[1])
