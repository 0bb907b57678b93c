// Learning subspaces (MATH.md §2): which singular directions of a layer learn, and principal
// angles between subspaces.  The one place of the rule that picks the learning subspace.
#pragma once

#include "deeplinear/types.hpp"

#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace deeplinear {

using MatD = Eigen::MatrixXd;  // column-major double: small tracking matrices
using VecD = Eigen::VectorXd;

/// Principal angles (radians, ascending) between the column spans of orthonormal A and B.
/// Small angles come from their sines (the singular values of B - A AᵀB), large ones from
/// their cosines (those of AᵀB): acos alone loses half the digits near 0 (acos(1 - 1e-16) is
/// 1.5e-8), so exactly invariant subspaces would show angles of 1e-8 instead of 1e-15.
inline VecD principal_angles(const MatD& a_in, const MatD& b_in) {
  const bool swap = a_in.cols() < b_in.cols();  // angles are symmetric: B the narrower one
  const MatD& a = swap ? b_in : a_in;
  const MatD& b = swap ? a_in : b_in;
  const MatD m = a.transpose() * b;
  const VecD c = Eigen::JacobiSVD<MatD>(m).singularValues();  // descending
  // sines: the singular values of the tall B - A m, those of its triangular QR factor
  const Eigen::HouseholderQR<MatD> qr(MatD(b - a * m));
  const Index nr = std::min(qr.rows(), qr.cols());
  const MatD r = qr.matrixQR().topRows(nr).template triangularView<Eigen::Upper>();
  const VecD s = Eigen::JacobiSVD<MatD>(r).singularValues();  // descending
  const Index k = c.size();
  VecD ang(k);
  for (Index i = 0; i < k; ++i) {  // i-th smallest angle: i-th largest cosine, i-th smallest sine
    const double ci = std::min(1.0, std::max(0.0, c(i)));
    const double si = (s.size() == k) ? std::min(1.0, std::max(0.0, s(k - 1 - i))) : std::sqrt(std::max(0.0, 1.0 - ci * ci));
    ang(i) = (ci * ci >= 0.5) ? std::asin(si) : std::acos(ci);
  }
  return ang;
}

/// Whether the top rank2 of the values s (descending) are set apart from the rest: the
/// rank2-th and (rank2+1)-th differ by more than tie_tol * s_1^2 in s^2 (always, with at most
/// rank2 values).  Else the top rank2 directions are decided by round-off.
inline bool top_identifiable(const VecD& s, Index rank2, double tie_tol) {
  return s.size() <= rank2 || s(rank2 - 1) * s(rank2 - 1) - s(rank2) * s(rank2) > tie_tol * s(0) * s(0);
}

/// The learning subspace of a layer with singular values s_i, value i repeated count[i] times
/// (empty count: once each; a compressed network's layer is its block's 2r values once each and
/// |rho| d - 2r times): the rank2 values (with multiplicity) farthest from the bulk value, by
/// |s^2 - bulk^2| with bulk the median of all values (the upper median, index n / 2 ascending).
/// Ties are kept in index order.  Returns how many copies of each value are taken (they sum to
/// rank2), or an empty vector when the set is not identifiable: the rank2-th and (rank2+1)-th
/// distances differ by <= tie_tol * s_max^2 (e.g. at an orthogonal init, where all values are
/// equal, or exactly at a crossing), so that the chosen directions would be decided by round-off.
inline std::vector<Index> learning_counts(const VecD& s, const std::vector<Index>& count, Index rank2,
                                          double tie_tol) {
  const Index m = s.size();
  const auto mult = [&](Index i) { return count.empty() ? Index(1) : count[static_cast<std::size_t>(i)]; };
  Index total = 0;
  for (Index i = 0; i < m; ++i) total += mult(i);
  if (m == 0 || rank2 <= 0) return {};
  // the median of the multiset: ascending order, position total / 2
  std::vector<Index> asc(static_cast<std::size_t>(m));
  std::iota(asc.begin(), asc.end(), 0);
  std::stable_sort(asc.begin(), asc.end(), [&](Index i, Index j) { return s(i) < s(j); });
  double bulk = s(asc.back());
  for (Index acc = 0, k = 0; k < m; ++k) {
    acc += mult(asc[static_cast<std::size_t>(k)]);
    if (acc > total / 2) {
      bulk = s(asc[static_cast<std::size_t>(k)]);
      break;
    }
  }
  const auto dist = [&](Index i) { return std::abs(s(i) * s(i) - bulk * bulk); };
  std::vector<Index> idx(static_cast<std::size_t>(m));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](Index i, Index j) { return dist(i) > dist(j); });
  std::vector<Index> taken(static_cast<std::size_t>(m), 0);
  Index need = std::min(rank2, total);
  double last = 0.0, next = -1.0;  // distances of the last value taken and of the first one left
  for (Index i : idx) {
    if (need == 0) {
      next = dist(i);
      break;
    }
    const Index t = std::min(need, mult(i));
    taken[static_cast<std::size_t>(i)] = t;
    need -= t;
    last = dist(i);
    if (need == 0 && t < mult(i)) {  // a copy of this value is left
      next = dist(i);
      break;
    }
  }
  if (total > rank2) {
    const double smax = s.maxCoeff();
    if (next >= 0.0 && last - next <= tie_tol * smax * smax) return {};
  }
  return taken;
}

}  // namespace deeplinear
