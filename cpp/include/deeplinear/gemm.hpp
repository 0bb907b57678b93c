// C = alpha * op(A) * op(B) + beta * C for the core's row-major matrices.
//
// Why not Eigen's `C.noalias() = A * B`: Eigen evaluates it as "C = 0; C += A * B", an extra
// pass over C before the product.  Here a product is one GEMM call with the caller's beta
// (beta = 0: no zeroing pass; beta = 1 - lr * lambda: plain GD with weight decay fused into
// the gradient product) when Eigen is routed to BLAS, and Eigen's product otherwise.
// Small products (the 2r x 2r factors of a compressed network) also go to BLAS: OpenBLAS's
// small-matrix kernels beat hand-written register-blocked loops measured at sizes 2 to 32.
// Operands are row-major and contiguous (Mat or a Map over a C-contiguous array).
#pragma once

#include "deeplinear/types.hpp"


namespace deeplinear {

/// B^T of at most this many rows and columns is transposed on the stack (see gemm).
inline constexpr Index kSmallTranspose = 64;

namespace detail {

#ifdef EIGEN_USE_BLAS
// Eigen declares the Fortran BLAS (Eigen/src/misc/blas.h) when it is routed to BLAS; the build
// maps these names onto the library's symbols.  A row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T over the same memory.
inline void blas_gemm(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda,
                      const double* b, int ldb, double beta, double* c, int ldc) {
  dgemm_(&tb, &ta, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}
inline void blas_gemm(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda,
                      const float* b, int ldb, float beta, float* c, int ldc) {
  sgemm_(&tb, &ta, &n, &m, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
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

}  // namespace detail

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
#ifdef EIGEN_USE_BLAS
  if (!trans_a && trans_b && k <= kSmallTranspose && n <= kSmallTranspose) {
    // A B^T with small B: OpenBLAS has small-matrix kernels for the other layouts only (this
    // one took the general path with its packing, ~1.6x the time); transpose B on the stack.
    alignas(64) Scalar bt[kSmallTranspose * kSmallTranspose];
    const Scalar* bd = b.derived().data();
    for (Index p = 0; p < k; ++p)
      for (Index j = 0; j < n; ++j) bt[p * n + j] = bd[j * k + p];
    detail::blas_gemm('N', 'N', static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha,
                      a.derived().data(), static_cast<int>(a.cols()), bt, static_cast<int>(n), beta, c.data(),
                      static_cast<int>(n));
    return;
  }
  if (k > 0) {
    detail::blas_gemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', static_cast<int>(m), static_cast<int>(n),
                      static_cast<int>(k), alpha, a.derived().data(), static_cast<int>(a.cols()),
                      b.derived().data(), static_cast<int>(b.cols()), beta, c.data(), static_cast<int>(n));
    return;
  }
#endif
  const auto& ad = a.derived();
  const auto& bd = b.derived();
  if (trans_a && trans_b)
    detail::eigen_gemm(c, ad.transpose(), bd.transpose(), alpha, beta);
  else if (trans_a)
    detail::eigen_gemm(c, ad.transpose(), bd, alpha, beta);
  else if (trans_b)
    detail::eigen_gemm(c, ad, bd.transpose(), alpha, beta);
  else
    detail::eigen_gemm(c, ad, bd, alpha, beta);
}

}  // namespace deeplinear
