// Losses of MATH.md §1: factorization, completion and regression, sum or mean reduction.
//
// An Objective does not own its data: it maps arrays owned by the caller (NumPy arrays kept
// alive by the bindings), so a d x d target is never copied.
#pragma once

#include "deeplinear/types.hpp"

#include <limits>
#include <type_traits>

namespace deeplinear {

enum class LossKind { Factorization, Completion, Regression };

/// Squared Frobenius norm accumulated in double (float32 data would lose digits otherwise).
template <class Derived>
double squared_norm(const Eigen::MatrixBase<Derived>& m) {
  using S = typename Derived::Scalar;
  if constexpr (std::is_same_v<S, double>) {
    return m.squaredNorm();
  } else {
    double acc = 0.0;
    for (Index i = 0; i < m.rows(); ++i)
      for (Index j = 0; j < m.cols(); ++j) {
        const double v = static_cast<double>(m(i, j));
        acc += v * v;
      }
    return acc;
  }
}

/// Loss values at one point: the training loss (data term + weight decay) and, for completion,
/// the test loss on the complement of the mask (no weight-decay term).
struct LossValue {
  double train = std::numeric_limits<double>::quiet_NaN();
  double test = std::numeric_limits<double>::quiet_NaN();
};

template <class Scalar>
class Objective {
 public:
  using M = Mat<Scalar>;
  using Map = ConstMatMap<Scalar>;

  /// f = (c/2)||W_{L:1} - target||^2; c = 1 or 1/(rows*cols).
  static Objective factorization(const ConstMatRef<Scalar>& target, Reduction red) {
    check_finite(target, "target");
    Objective o(LossKind::Factorization, target);
    o.c_ = red == Reduction::Sum ? 1.0 : 1.0 / (double(target.rows()) * double(target.cols()));
    return o;
  }

  /// f = (c/2)||mask (.) (W_{L:1} - target)||^2 with c = 1 or 1/(rows*cols) (mean over ALL
  /// entries, MATH.md §1); test loss on 1 - mask.
  static Objective completion(const ConstMatRef<Scalar>& target, const ConstMatRef<Scalar>& mask,
                              Reduction red) {
    check_finite(target, "target");
    require(mask.rows() == target.rows() && mask.cols() == target.cols(), "mask",
            "must have the target's shape");
    require(mask.rows() == 1 || mask.outerStride() == mask.cols(), "mask", "must be C-contiguous");
    require(((mask.array() == Scalar(0)) || (mask.array() == Scalar(1))).all(), "mask",
            "entries must be 0 or 1");
    Objective o(LossKind::Completion, target, mask.data(), nullptr, 0);
    o.c_ = red == Reduction::Sum ? 1.0 : 1.0 / (double(target.rows()) * double(target.cols()));
    return o;
  }

  /// f = (c/2)||W_{L:1} X - Y||^2, X is d_0 x n, Y is d_L x n; c = 1 or 1/(d_L n).
  static Objective regression(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& y,
                              Reduction red) {
    check_finite(x, "X");
    check_finite(y, "Y");
    require(x.cols() == y.cols(), "Y", "must have as many columns (samples) as X");
    Objective o(LossKind::Regression, y, nullptr, x.data(), x.rows());
    o.c_ = red == Reduction::Sum ? 1.0 : 1.0 / (double(y.rows()) * double(y.cols()));
    return o;
  }

  /// Fixed outer factors: the network's output A (k_L x k_0) is read as the wide matrix
  /// U A V^T (U: d_L x k_L, V: d_0 x k_0, orthonormal columns in practice), so a narrow network
  /// trains the middle of U W~_L ... W~_1 V^T against the wide loss (the compressed network of
  /// MATH.md §3 and §4 with U, V fixed).  The residual handed back is U^T R V.
  void set_outer_maps(const ConstMatRef<Scalar>& u, const ConstMatRef<Scalar>& v) {
    require(!has_input(), "problem", "outer maps apply to factorization and completion only");
    check_finite(u, "U");
    check_finite(v, "V");
    require(u.rows() == target_.rows(), "U", "must have as many rows as the target");
    require(v.rows() == target_.cols(), "V", "must have as many rows as the target has columns");
    new (&left_) Map(u.data(), u.rows(), u.cols());
    new (&right_) Map(v.data(), v.rows(), v.cols());
    outer_ = true;
    wide_.resize(target_.rows(), target_.cols());
    tmp_.resize(u.cols(), target_.cols());
    tmp2_.resize(target_.rows(), v.cols());
  }

  /// Overrides the reduction constant (a compressed network keeps the wide network's c).
  void set_c(double c) {
    require(std::isfinite(c) && c > 0, "c", "must be finite and > 0");
    c_ = c;
  }

  LossKind kind() const { return kind_; }
  double c() const { return c_; }
  bool has_test_loss() const { return kind_ == LossKind::Completion; }
  bool has_input() const { return kind_ == LossKind::Regression; }
  /// d_L: rows of the network output.
  Index out_dim() const { return outer_ ? left_.cols() : target_.rows(); }
  /// d_0: input size of the network.
  Index in_dim() const { return has_input() ? x_.rows() : outer_ ? right_.cols() : target_.cols(); }
  /// Columns of every prefix product W_{l:1} X (n for regression, d_0 otherwise).
  Index n_cols() const { return outer_ ? right_.cols() : target_.cols(); }
  const Map& input() const { return x_; }

  /// Given the output P = W_{L:1} (X), writes the residual R = c * mask (.) (P - target) into
  /// r (preallocated, same shape) and returns the data part of the loss (and the test loss).
  template <class Out>
  LossValue residual(const Out& p, M& r) const {
    if (outer_) {
      tmp_.noalias() = p * right_.transpose();
      wide_.noalias() = left_ * tmp_;
      const LossValue v = wide_residual(wide_, wide_);
      tmp2_.noalias() = wide_ * right_;
      r.noalias() = left_.transpose() * tmp2_;
      return v;
    }
    return wide_residual(p, r);
  }

 private:
  template <class Out>
  LossValue wide_residual(const Out& p, M& r) const {
    LossValue v;
    r = p - target_;
    if (kind_ == LossKind::Completion) {
      v.test = 0.5 * c_ * squared_norm((r.array() * (Scalar(1) - mask_.array())).matrix());
      r.array() *= mask_.array();
    }
    v.train = 0.5 * c_ * squared_norm(r);
    r *= static_cast<Scalar>(c_);
    return v;
  }

  Objective(LossKind kind, const ConstMatRef<Scalar>& target, const Scalar* mask = nullptr,
            const Scalar* x = nullptr, Index x_rows = 0)
      : kind_(kind),
        target_(target.data(), target.rows(), target.cols()),
        mask_(mask, mask ? target.rows() : 0, mask ? target.cols() : 0),
        x_(x, x_rows, x ? target.cols() : 0) {}

  static void check_finite(const ConstMatRef<Scalar>& a, const char* name) {
    require(a.rows() > 0 && a.cols() > 0, name, "must not be empty");
    require(a.rows() == 1 || a.outerStride() == a.cols(), name, "must be C-contiguous");
    require(a.allFinite(), name, "contains NaN or Inf");
  }

  LossKind kind_;
  Map target_;
  Map mask_;
  Map x_;
  Map left_{nullptr, 0, 0};
  Map right_{nullptr, 0, 0};
  bool outer_ = false;
  mutable M wide_, tmp_, tmp2_;  // workspace of the outer maps
  double c_ = 1.0;
};

}  // namespace deeplinear
