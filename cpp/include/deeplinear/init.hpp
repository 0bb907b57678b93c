// Weight initialisation (MATH.md §1).
//
// Draw order, for reproducibility: layers 1..L in turn; for each layer the Gaussian matrix is
// filled row by row from one Rng stream seeded once per network.
#pragma once

#include "deeplinear/rng.hpp"
#include "deeplinear/types.hpp"

#include <algorithm>

namespace deeplinear {

/// A k x k Haar-orthogonal matrix: QR of a standard Gaussian matrix with the sign fix
/// Q <- Q diag(sign(diag R)) (without it the distribution is not Haar).
inline Eigen::MatrixXd haar_orthogonal(Rng& rng, Index k) {
  Eigen::MatrixXd g(k, k);
  for (Index i = 0; i < k; ++i)
    for (Index j = 0; j < k; ++j) g(i, j) = rng.normal();
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  Eigen::MatrixXd q = qr.householderQ() * Eigen::MatrixXd::Identity(k, k);
  const auto& r = qr.matrixQR();
  for (Index j = 0; j < k; ++j)
    if (r(j, j) < 0) q.col(j) = -q.col(j);
  return q;
}

/// eps * (the top-left m x n block of a max(m, n) Haar matrix): orthonormal rows or columns.
template <class Scalar>
Mat<Scalar> orthogonal_layer(Rng& rng, Index m, Index n, double scale) {
  require(m > 0 && n > 0, "dims", "layer sizes must be positive");
  const Index k = std::max(m, n);
  Eigen::MatrixXd q = haar_orthogonal(rng, k);
  return (scale * q.topLeftCorner(m, n)).cast<Scalar>();
}

/// Gaussian with standard deviation scale * sqrt(min(m, n) / (m n)).
template <class Scalar>
Mat<Scalar> gaussian_layer(Rng& rng, Index m, Index n, double scale) {
  require(m > 0 && n > 0, "dims", "layer sizes must be positive");
  const double std = scale * std::sqrt(static_cast<double>(std::min(m, n)) /
                                       (static_cast<double>(m) * static_cast<double>(n)));
  Mat<Scalar> w(m, n);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j) w(i, j) = static_cast<Scalar>(std * rng.normal());
  return w;
}

enum class InitKind { Orthogonal, Gaussian };

/// Weights of a network with layer sizes dims = (d_0, ..., d_L); W_l is d_l x d_{l-1}.
template <class Scalar>
std::vector<Mat<Scalar>> init_weights(const std::vector<Index>& dims, InitKind kind, double scale,
                                      std::uint64_t seed) {
  require(dims.size() >= 2, "dims", "need at least one layer (two sizes)");
  for (Index d : dims) require(d > 0, "dims", "layer sizes must be positive");
  require(std::isfinite(scale), "init_scale", "must be finite");
  Rng rng(seed);
  std::vector<Mat<Scalar>> w;
  w.reserve(dims.size() - 1);
  for (std::size_t l = 1; l < dims.size(); ++l) {
    if (kind == InitKind::Orthogonal)
      w.push_back(orthogonal_layer<Scalar>(rng, dims[l], dims[l - 1], scale));
    else
      w.push_back(gaussian_layer<Scalar>(rng, dims[l], dims[l - 1], scale));
  }
  return w;
}

}  // namespace deeplinear
