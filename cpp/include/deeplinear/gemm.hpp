// C = alpha * op(A) * op(B) + beta * C for the core's row-major matrices.
//
// Why not Eigen's `C.noalias() = A * B`: Eigen evaluates it as "C = 0; C += A * B", an extra
// pass over C before the product.  Here a product is one GEMM call with the caller's beta
// (beta = 0: no zeroing pass; beta = 1 - lr * lambda: plain GD with weight decay fused into
// the gradient product) when Eigen is routed to BLAS, and Eigen's product otherwise.
// Small double products (the 2r x 2r factors of a compressed network) go to a register-blocked
// kernel below where the compiler targets AVX-512, or AVX2 + FMA (faster than OpenBLAS at the
// sizes it takes, see use_small_kernel), else to BLAS.  The kernels sum each entry's k products
// in order with one FMA each, so their results may differ from BLAS's in the last bits.
// Operands are row-major and contiguous (Mat or a Map over a C-contiguous array).
#pragma once

#include "deeplinear/types.hpp"
#ifdef EIGEN_USE_BLAS
#include "deeplinear/blas_dispatch.hpp"
#endif

#include <type_traits>
#if defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#endif


namespace deeplinear {

/// B^T of at most this many rows and columns is transposed on the stack (see gemm).
inline constexpr Index kSmallTranspose = 64;

namespace detail {

/// bt (k x n, row-major) = b^T for b (n x k, row-major), both contiguous: 4 x 4 tiles through
/// registers where the compiler has AVX (a scalar copy reads b with a stride, ~2.5x slower at
/// 20 x 20), scalar for the edges.
template <class Scalar>
inline void transpose_small(Scalar* bt, const Scalar* b, Index n, Index k) {
#if defined(__AVX__)
  if constexpr (std::is_same_v<Scalar, double>) {
    const Index k4 = k - k % 4, n4 = n - n % 4;
    for (Index j = 0; j < n4; j += 4) {
      for (Index p = 0; p < k4; p += 4) {
        // rows j..j+3 of b, columns p..p+3 -> rows p..p+3 of bt, columns j..j+3
        const __m256d r0 = _mm256_loadu_pd(b + (j + 0) * k + p);
        const __m256d r1 = _mm256_loadu_pd(b + (j + 1) * k + p);
        const __m256d r2 = _mm256_loadu_pd(b + (j + 2) * k + p);
        const __m256d r3 = _mm256_loadu_pd(b + (j + 3) * k + p);
        const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
        const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(bt + (p + 0) * n + j, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(bt + (p + 1) * n + j, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(bt + (p + 2) * n + j, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(bt + (p + 3) * n + j, _mm256_permute2f128_pd(t1, t3, 0x31));
      }
    }
    // edges: columns p >= k4 of every row, rows j >= n4 of the remaining columns
    for (Index p = k4; p < k; ++p)
      for (Index j = 0; j < n; ++j) bt[p * n + j] = b[j * k + p];
    for (Index p = 0; p < k4; ++p)
      for (Index j = n4; j < n; ++j) bt[p * n + j] = b[j * k + p];
    return;
  }
#endif
  for (Index p = 0; p < k; ++p)
    for (Index j = 0; j < n; ++j) bt[p * n + j] = b[j * k + p];
}

#if defined(__AVX512F__)
// Register-blocked double GEMM for the 2r x 2r factors of a compressed network (n <= 32
// columns, m, k <= 64): C (m x n) = alpha op(A) B + beta C, row-major, op(A) = A or A^T (read
// with strides), B contiguous k x n.  Rows of C go in blocks of MR (accumulators for MR rows x n
// columns stay in registers, the last 1-4 columns in a ymm register, 5-7 in a masked zmm); per
// k: one broadcast of op(A)(i, p) per row, n/8 loads of B's row p.  Measured against
// OpenBLAS 0.3.31's small-matrix kernels (call path included, square sizes, Zen 4): 10-35%
// faster at 2-20 and 28 (n = 20: 303 vs 387 ns for A B, 302 vs 375 for A^T B, 310 vs 405 with
// beta = 1), within ~3% slower at 24 and 32, which therefore stay with BLAS (use_small_kernel).
#define DEEPLINEAR_SMALL_GEMM 1
inline constexpr Index kSmallKernelCols = 32;
inline constexpr Index kSmallKernelDepth = 64;

inline bool use_small_kernel(Index m, Index k, Index n) {
  return n >= 1 && n <= kSmallKernelCols && (n <= 20 || n % 8 != 0) && m <= kSmallKernelDepth &&
         k <= kSmallKernelDepth;
}

template <int MR, int NV, bool YT>
inline void small_kernel_rows(Index k, Index n, const double* a, Index a_rs, Index a_cs, const double* b,
                              double* c, double alpha, double beta, __mmask8 tail) {
  constexpr int NZ = YT ? NV - 1 : NV;  // zmm vectors per row (the last one masked unless YT)
  __m512d acc[MR][NZ > 0 ? NZ : 1];
  __m256d acct[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NZ; ++v) acc[r][v] = _mm512_setzero_pd();
    if constexpr (YT) acct[r] = _mm256_setzero_pd();
  }
  for (Index p = 0; p < k; ++p) {
    __m512d bv[NZ > 0 ? NZ : 1];
    __m256d bt = _mm256_setzero_pd();
    const double* bp = b + p * n;
#pragma GCC unroll 4
    for (int v = 0; v < NZ - 1; ++v) bv[v] = _mm512_loadu_pd(bp + 8 * v);
    if constexpr (YT) {
      bv[NZ - 1] = _mm512_loadu_pd(bp + 8 * (NZ - 1));
      bt = _mm256_maskz_loadu_pd(tail, bp + 8 * NZ);
    } else {
      bv[NZ - 1] = _mm512_maskz_loadu_pd(tail, bp + 8 * (NZ - 1));
    }
    const double* ap = a + p * a_cs;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const double s = ap[r * a_rs];
      const __m512d ar = _mm512_set1_pd(s);
#pragma GCC unroll 4
      for (int v = 0; v < NZ; ++v) acc[r][v] = _mm512_fmadd_pd(ar, bv[v], acc[r][v]);
      if constexpr (YT) acct[r] = _mm256_fmadd_pd(_mm512_castpd512_pd256(ar), bt, acct[r]);
    }
  }
  // C = alpha acc + beta C: every load of the block's C before its first store (a masked store
  // of a row's tail followed by a load of the next row, within the same 32 bytes, stalls on
  // store forwarding: ~2x the whole product at n = 10)
  const __m512d va = _mm512_set1_pd(alpha), vb = _mm512_set1_pd(beta);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    const double* cp = c + r * n;
#pragma GCC unroll 4
    for (int v = 0; v < NZ; ++v) {
      const __mmask8 mk = (!YT && v == NZ - 1) ? tail : __mmask8(0xFF);
      acc[r][v] = _mm512_mul_pd(va, acc[r][v]);
      if (beta != 0.0) acc[r][v] = _mm512_fmadd_pd(vb, _mm512_maskz_loadu_pd(mk, cp + 8 * v), acc[r][v]);
    }
    if constexpr (YT) {
      acct[r] = _mm256_mul_pd(_mm256_set1_pd(alpha), acct[r]);
      if (beta != 0.0)
        acct[r] = _mm256_fmadd_pd(_mm256_set1_pd(beta), _mm256_maskz_loadu_pd(tail, cp + 8 * NZ), acct[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    double* cp = c + r * n;
#pragma GCC unroll 4
    for (int v = 0; v < NZ; ++v) {
      const __mmask8 mk = (!YT && v == NZ - 1) ? tail : __mmask8(0xFF);
      _mm512_mask_storeu_pd(cp + 8 * v, mk, acc[r][v]);
    }
    if constexpr (YT) _mm256_mask_storeu_pd(cp + 8 * NZ, tail, acct[r]);
  }
}

template <int NV, bool YT>
inline void small_kernel(Index m, Index k, Index n, const double* a, Index a_rs, Index a_cs, const double* b,
                         double* c, double alpha, double beta, __mmask8 tail) {
  // MR x NV accumulators + NV of B + 1 broadcast <= 32 registers; 5 rows at NV = 3 (n = 17..23:
  // 20 = 4 x 5 rows, measured ~4% faster than 8 + 8 + 4)
  constexpr int MR = NV <= 2 ? 8 : NV == 3 ? 5 : 6;
  Index i = 0;
  for (; i + MR <= m; i += MR)
    small_kernel_rows<MR, NV, YT>(k, n, a + i * a_rs, a_rs, a_cs, b, c + i * n, alpha, beta, tail);
  const double* ai = a + i * a_rs;
  double* ci = c + i * n;
  switch (m - i) {
    case 0: break;
    case 1: small_kernel_rows<1, NV, YT>(k, n, ai, a_rs, a_cs, b, ci, alpha, beta, tail); break;
    case 2: small_kernel_rows<2, NV, YT>(k, n, ai, a_rs, a_cs, b, ci, alpha, beta, tail); break;
    case 3: small_kernel_rows<3, NV, YT>(k, n, ai, a_rs, a_cs, b, ci, alpha, beta, tail); break;
    case 4: small_kernel_rows<4, NV, YT>(k, n, ai, a_rs, a_cs, b, ci, alpha, beta, tail); break;
    case 5: small_kernel_rows<5, NV, YT>(k, n, ai, a_rs, a_cs, b, ci, alpha, beta, tail); break;
    case 6: small_kernel_rows<6, NV, YT>(k, n, ai, a_rs, a_cs, b, ci, alpha, beta, tail); break;
    default: small_kernel_rows<7, NV, YT>(k, n, ai, a_rs, a_cs, b, ci, alpha, beta, tail); break;
  }
}

/// C (m x n) = alpha op(A) B + beta C with 1 <= n <= 32; A is m x k (trans_a: k x m), all
/// row-major and contiguous.  beta == 0: C is not read.
inline void small_gemm(bool trans_a, Index m, Index k, Index n, const double* a, const double* b, double* c,
                       double alpha, double beta) {
  const Index a_rs = trans_a ? 1 : k, a_cs = trans_a ? m : 1;
  const int full = static_cast<int>(n / 8), rem = static_cast<int>(n % 8);
  const __mmask8 tail = rem ? static_cast<__mmask8>((1u << rem) - 1) : static_cast<__mmask8>(0xFF);
  const int nv = full + (rem ? 1 : 0);
  if (rem != 0 && rem <= 4 && full >= 1) {
    switch (nv) {
      case 2: small_kernel<2, true>(m, k, n, a, a_rs, a_cs, b, c, alpha, beta, tail); return;
      case 3: small_kernel<3, true>(m, k, n, a, a_rs, a_cs, b, c, alpha, beta, tail); return;
      default: small_kernel<4, true>(m, k, n, a, a_rs, a_cs, b, c, alpha, beta, tail); return;
    }
  }
  switch (nv) {
    case 1: small_kernel<1, false>(m, k, n, a, a_rs, a_cs, b, c, alpha, beta, tail); return;
    case 2: small_kernel<2, false>(m, k, n, a, a_rs, a_cs, b, c, alpha, beta, tail); return;
    case 3: small_kernel<3, false>(m, k, n, a, a_rs, a_cs, b, c, alpha, beta, tail); return;
    default: small_kernel<4, false>(m, k, n, a, a_rs, a_cs, b, c, alpha, beta, tail); return;
  }
}

#elif defined(__AVX2__) && defined(__FMA__)
// The same kind of kernel for AVX2 + FMA (16 ymm registers of 4 doubles; e.g. AMD Zen 2, where
// OpenBLAS's Haswell target has no small-matrix kernel and packs both operands): C (m x n) =
// alpha op(A) B + beta C with n <= 32, m, k <= 64.  Rows of C go in blocks of MR whose MR x NV
// accumulators (NV = ceil(n / 4)) stay in registers; per k: NV loads of B's row p and one
// broadcast of op(A)(i, p) per row.  B's row is kept in registers where MR x NV + NV + 1 <= 16,
// else read as the FMAs' memory operands; n = 29..32 goes as two panels, 16 + the rest (16
// accumulators do not fit beside a broadcast).  n % 4 != 0: B is first copied to the stack with
// rows padded to a multiple of 4 (zeros; unpadded rows of 8 n bytes put most loads across cache
// lines: ~1.3x the time at n = 21), and C's last vector is loaded and stored masked.
//
// Measured with benchmarks/small_gemm.py against OpenBLAS 0.3.31's Haswell kernels (NumPy's,
// call path included: A B^T through the stack transpose; AMD EPYC Zen 2, best of interleaved
// batches on a loaded machine), ns per product, kernel / BLAS:
//   m = k = n   A B          A^T B        A B^T
//        4      16 / 202     16 / 130     22 / 207
//        8      42 / 169     43 / 127     53 / 179
//       12     124 / 326    120 / 262    146 / 338
//       16     248 / 441    245 / 401    284 / 483
//       20     426 / 783    430 / 741    487 / 836   (the compressed step's 2r = 20)
//       24     692 / 1038   682 / 924    777 / 1129
//       28    1054 / 1649  1051 / 1520  1174 / 1771
//       32    1704 / 2172  1688 / 2010  1814 / 2311
// faster at every m = k = n from 2 to 32, every layout (tails n % 4 != 0 included: 0.72-0.89x
// at 25-31), and at n = 20 with m = k up to 64 (3.9 vs 5.3 us at 64): the kernel takes all of
// them.  Wider n stays with BLAS.
#define DEEPLINEAR_SMALL_GEMM 1
inline constexpr Index kSmallKernelCols = 32;
inline constexpr Index kSmallKernelDepth = 64;

inline bool use_small_kernel(Index m, Index k, Index n) {
  return n >= 1 && n <= kSmallKernelCols && m <= kSmallKernelDepth && k <= kSmallKernelDepth;
}

/// Rows per block for NV ymm vectors per row.
constexpr int small_rows(int nv) { return nv == 1 ? 8 : nv == 2 ? 6 : nv == 3 ? 4 : nv <= 5 ? 3 : 2; }

/// One block of MR rows of C (row stride ldc; B's rows ldb apart, readable up to 4 NV columns).
template <int MR, int NV, bool TAIL>
inline void small_kernel_rows(Index k, const double* a, Index a_rs, Index a_cs, const double* b, Index ldb,
                              double* c, Index ldc, double alpha, double beta, __m256i tail) {
  constexpr bool in_regs = MR * NV + NV + 1 <= 16;
  __m256d acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_pd();
  for (Index p = 0; p < k; ++p) {
    const double* bp = b + p * ldb;
    const double* ap = a + p * a_cs;
    if constexpr (in_regs) {
      __m256d bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_pd(bp + 4 * v);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m256d ar = _mm256_broadcast_sd(ap + r * a_rs);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_pd(ar, bv[v], acc[r][v]);
      }
    } else {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m256d ar = _mm256_broadcast_sd(ap + r * a_rs);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_pd(ar, _mm256_loadu_pd(bp + 4 * v), acc[r][v]);
      }
    }
  }
  // every load of the block's C before its first store (store forwarding, as above)
  const __m256d va = _mm256_set1_pd(alpha), vb = _mm256_set1_pd(beta);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    const double* cp = c + r * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      acc[r][v] = _mm256_mul_pd(va, acc[r][v]);
      if (beta != 0.0) {
        const __m256d cv = (TAIL && v == NV - 1) ? _mm256_maskload_pd(cp + 4 * v, tail) : _mm256_loadu_pd(cp + 4 * v);
        acc[r][v] = _mm256_fmadd_pd(vb, cv, acc[r][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    double* cp = c + r * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (TAIL && v == NV - 1)
        _mm256_maskstore_pd(cp + 4 * v, tail, acc[r][v]);
      else
        _mm256_storeu_pd(cp + 4 * v, acc[r][v]);
    }
  }
}

/// All m rows of a panel of 4 (NV - 1) < w <= 4 NV columns (TAIL: w % 4 != 0).
template <int NV, bool TAIL>
inline void small_kernel(Index m, Index k, const double* a, Index a_rs, Index a_cs, const double* b, Index ldb,
                         double* c, Index ldc, double alpha, double beta, __m256i tail) {
  constexpr int MR = small_rows(NV);
  Index i = 0;
  for (; i + MR <= m; i += MR)
    small_kernel_rows<MR, NV, TAIL>(k, a + i * a_rs, a_rs, a_cs, b, ldb, c + i * ldc, ldc, alpha, beta, tail);
  const double* ai = a + i * a_rs;
  double* ci = c + i * ldc;
  switch (m - i) {
    case 0: break;
    case 1: small_kernel_rows<1, NV, TAIL>(k, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta, tail); break;
    case 2: small_kernel_rows<2, NV, TAIL>(k, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta, tail); break;
    case 3: small_kernel_rows<3, NV, TAIL>(k, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta, tail); break;
    case 4: small_kernel_rows<4, NV, TAIL>(k, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta, tail); break;
    case 5: small_kernel_rows<5, NV, TAIL>(k, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta, tail); break;
    case 6: small_kernel_rows<6, NV, TAIL>(k, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta, tail); break;
    default: small_kernel_rows<7, NV, TAIL>(k, ai, a_rs, a_cs, b, ldb, ci, ldc, alpha, beta, tail); break;
  }
}

/// A panel of w <= 28 columns of C: NV = ceil(w / 4) vectors per row.
inline void small_panel(Index m, Index k, Index w, const double* a, Index a_rs, Index a_cs, const double* b,
                        Index ldb, double* c, Index ldc, double alpha, double beta) {
  const int rem = static_cast<int>(w % 4), nv = static_cast<int>((w + 3) / 4);
  // lane j of the last vector is live iff j < rem (the sign bit of each 64-bit mask lane)
  const __m256i tail = _mm256_cmpgt_epi64(_mm256_set1_epi64x(rem), _mm256_setr_epi64x(0, 1, 2, 3));
#define DEEPLINEAR_SMALL_PANEL(T)                                                                  \
  switch (nv) {                                                                                    \
    case 1: small_kernel<1, T>(m, k, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, tail); return;    \
    case 2: small_kernel<2, T>(m, k, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, tail); return;    \
    case 3: small_kernel<3, T>(m, k, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, tail); return;    \
    case 4: small_kernel<4, T>(m, k, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, tail); return;    \
    case 5: small_kernel<5, T>(m, k, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, tail); return;    \
    case 6: small_kernel<6, T>(m, k, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, tail); return;    \
    default: small_kernel<7, T>(m, k, a, a_rs, a_cs, b, ldb, c, ldc, alpha, beta, tail); return;   \
  }
  if (rem != 0) DEEPLINEAR_SMALL_PANEL(true)
  DEEPLINEAR_SMALL_PANEL(false)
#undef DEEPLINEAR_SMALL_PANEL
}

/// C (m x n) = alpha op(A) B + beta C with 1 <= n <= 32, k <= 64; A is m x k (trans_a: k x m),
/// all row-major and contiguous.  beta == 0: C is not read.
inline void small_gemm(bool trans_a, Index m, Index k, Index n, const double* a, const double* b, double* c,
                       double alpha, double beta) {
  const Index a_rs = trans_a ? 1 : k, a_cs = trans_a ? m : 1;
  Index ldb = n;
  alignas(32) double padded[kSmallKernelDepth * kSmallKernelCols];
  if (n % 4 != 0) {
    ldb = (n + 3) / 4 * 4;
    for (Index p = 0; p < k; ++p) {
      for (Index j = 0; j < n; ++j) padded[p * ldb + j] = b[p * n + j];
      for (Index j = n; j < ldb; ++j) padded[p * ldb + j] = 0.0;
    }
    b = padded;
  }
  if (n <= 28) {
    small_panel(m, k, n, a, a_rs, a_cs, b, ldb, c, n, alpha, beta);
    return;
  }
  small_panel(m, k, 16, a, a_rs, a_cs, b, ldb, c, n, alpha, beta);
  small_panel(m, k, n - 16, a, a_rs, a_cs, b + 16, ldb, c + 16, n, alpha, beta);
}
#endif

#ifdef EIGEN_USE_BLAS
// A row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T over the same memory;
// the call goes to the BLAS library bound at run time (blas_dispatch.hpp).
template <class Scalar>
inline void blas_gemm(char ta, char tb, Index m, Index n, Index k, Scalar alpha, const Scalar* a, Index lda,
                      const Scalar* b, Index ldb, Scalar beta, Scalar* c, Index ldc) {
  blas::gemm<Scalar>(tb, ta, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
}
#endif

template <class Scalar, class C, class OpA, class OpB>
void eigen_gemm(C& c, const OpA& a, const OpB& b, Scalar alpha, Scalar beta) {
  if (beta == Scalar(0))
    c.setZero();
  else if (beta != Scalar(1))
    c *= beta;
  c.noalias() += alpha * (a * b);
}

#if defined(DEEPLINEAR_SMALL_GEMM)
/// The small kernel's path of gemm (double, use_small_kernel(m, k, n), not A^T B^T): A B^T
/// through a transpose of B on the stack.  Raw row-major contiguous operands.
inline void small_gemm_op(bool trans_a, bool trans_b, Index m, Index k, Index n, const double* a,
                          const double* b, double* c, double alpha, double beta) {
  if (!trans_b) {
    small_gemm(trans_a, m, k, n, a, b, c, alpha, beta);
    return;
  }
  alignas(64) double bt[kSmallKernelDepth * kSmallKernelCols];
  transpose_small(bt, b, n, k);
  small_gemm(false, m, k, n, a, bt, c, alpha, beta);
}
#endif

/// gemm without the small kernel: BLAS where the build routes products to it, else Eigen.
template <class Scalar, class DA, class DB>
void general_gemm(Mat<Scalar>& c, const Eigen::MatrixBase<DA>& a, bool trans_a, const Eigen::MatrixBase<DB>& b,
                  bool trans_b, Scalar alpha, Scalar beta) {
#ifdef EIGEN_USE_BLAS
  const Index m = c.rows(), n = c.cols(), k = trans_a ? a.rows() : a.cols();
  if (!trans_a && trans_b && k <= kSmallTranspose && n <= kSmallTranspose) {
    // A B^T with small B: OpenBLAS has small-matrix kernels for the other layouts only (this
    // one took the general path with its packing, ~1.6x the time); transpose B on the stack.
    alignas(64) Scalar bt[kSmallTranspose * kSmallTranspose];
    transpose_small(bt, b.derived().data(), n, k);
    blas_gemm<Scalar>('N', 'N', m, n, k, alpha, a.derived().data(), a.cols(), bt, n, beta, c.data(), n);
    return;
  }
  if (k > 0) {
    blas_gemm<Scalar>(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a.derived().data(), a.cols(),
                      b.derived().data(), b.cols(), beta, c.data(), n);
    return;
  }
#endif
  const auto& ad = a.derived();
  const auto& bd = b.derived();
  if (trans_a && trans_b)
    eigen_gemm(c, ad.transpose(), bd.transpose(), alpha, beta);
  else if (trans_a)
    eigen_gemm(c, ad.transpose(), bd, alpha, beta);
  else if (trans_b)
    eigen_gemm(c, ad, bd.transpose(), alpha, beta);
  else
    eigen_gemm(c, ad, bd, alpha, beta);
}

}  // namespace detail

/// W x (trans = false) or W^T x (trans = true) for a row-major W and a column-major block x of
/// a few dozen columns (the products of incremental tracking, krylov.hpp); the result is
/// column-major.  Computed as the transposed product x^T W^T (or x^T W), the thin dimension as
/// BLAS's m, then transposed: inside a training step at d = 1000 (OpenBLAS, 2 threads, 12-29
/// columns) this took 15.5 ms per incremental record of three layers against 21 ms for W x with
/// the thin dimension as n.  A block of 4j + 3 columns gets a zero column more: OpenBLAS's
/// Haswell kernel takes m in steps of 4 and its edge case for 3 left over was slower than a full
/// step (W x at d = 1000, three layers: 27 columns 4.9-5.0 ms, 28 columns 4.5-4.6; 31 and 39
/// likewise), while 1 or 2 left over gain nothing from padding.
inline Eigen::MatrixXd thin_product(const Mat<double>& w, bool trans, const Eigen::MatrixXd& x) {
  const Index rows = trans ? w.cols() : w.rows(), k = x.rows(), c = x.cols();
  require(k == (trans ? w.rows() : w.cols()), "thin_product", "shapes do not match");
  if (c == 0 || k == 0 || rows == 0) return Eigen::MatrixXd::Zero(rows, c);
#ifdef EIGEN_USE_BLAS
  // column-major: x is k x c (ld k); W's memory is W^T, w.cols() x w.rows() (ld w.cols())
  const Index cp = c % 4 == 3 ? c + 1 : c;  // columns as BLAS sees them
  Eigen::MatrixXd xp;
  if (cp != c) {
    xp.resize(k, cp);
    xp.leftCols(c) = x;
    xp.col(c).setZero();
  }
  Eigen::MatrixXd rt(cp, rows);
  blas::gemm<double>('T', trans ? 'T' : 'N', cp, rows, k, 1.0, cp != c ? xp.data() : x.data(), k, w.data(), w.cols(),
                     0.0, rt.data(), cp);
  return rt.topRows(c).transpose();
#else
  return trans ? Eigen::MatrixXd(w.transpose() * x) : Eigen::MatrixXd(w * x);
#endif
}

/// c = alpha * op(a) * op(b) + beta * c, op(x) = x^T when the flag is set.  c must already
/// have the product's shape and must not alias a or b.
template <class Scalar, class DA, class DB>
void gemm(Mat<Scalar>& c, const Eigen::MatrixBase<DA>& a, bool trans_a, const Eigen::MatrixBase<DB>& b,
          bool trans_b, Scalar alpha = Scalar(1), Scalar beta = Scalar(0)) {
  const Index m = trans_a ? a.cols() : a.rows();
  const Index k = trans_a ? a.rows() : a.cols();
  const Index n = trans_b ? b.rows() : b.cols();
  const Index kb = trans_b ? b.cols() : b.rows();
  require(k == kb && c.rows() == m && c.cols() == n, "gemm", "shapes do not match");
#if defined(DEEPLINEAR_SMALL_GEMM)
  if constexpr (std::is_same_v<Scalar, double>) {
    if (!(trans_a && trans_b) && detail::use_small_kernel(m, k, n)) {
      detail::small_gemm_op(trans_a, trans_b, m, k, n, a.derived().data(), b.derived().data(), c.data(), alpha,
                            beta);
      return;
    }
  }
#endif
  detail::general_gemm(c, a, trans_a, b, trans_b, alpha, beta);
}

}  // namespace deeplinear
