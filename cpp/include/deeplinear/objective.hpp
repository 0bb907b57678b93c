// Losses of MATH.md §1 and §5: factorization, completion, regression and classification
// (one-hot targets, squared loss), scaled by the reduction constant c that the problem hands over.
//
// An Objective does not own its data: it maps arrays owned by the caller (NumPy arrays kept
// alive by the bindings), so a d x d target is never copied.
#pragma once

#include "deeplinear/gemm.hpp"
#include "deeplinear/types.hpp"

#include <limits>
#include <type_traits>

namespace deeplinear {

enum class LossKind { Factorization, Completion, Regression, Classification };

/// Sum of squares of n contiguous values, accumulated in double (float32 data would lose
/// digits otherwise), vectorised (the order of the additions depends on the build's vector width).
template <class Scalar>
double sum_squares(const Scalar* p, Index n) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (Index i = 0; i < n; ++i) {
    const double v = static_cast<double>(p[i]);
    acc += v * v;
  }
  return acc;
}

/// Squared Frobenius norm of a contiguous matrix, accumulated in double.
template <class Scalar>
double squared_norm(const Mat<Scalar>& m) {
  return sum_squares(m.data(), m.size());
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

  /// f = (c/2)||W_{L:1} - target||^2.
  static Objective factorization(const ConstMatRef<Scalar>& target, double c) {
    check_finite(target, "target");
    Objective o(LossKind::Factorization, target);
    o.set_c(c);
    return o;
  }

  /// f = (c/2)||mask (.) (W_{L:1} - target)||^2 ("mean": c = 1/(rows*cols), over ALL entries,
  /// MATH.md §1); test loss on 1 - mask.
  static Objective completion(const ConstMatRef<Scalar>& target, const ConstMatRef<Scalar>& mask,
                              double c) {
    check_finite(target, "target");
    require(mask.rows() == target.rows() && mask.cols() == target.cols(), "mask",
            "must have the target's shape");
    require(mask.rows() == 1 || mask.outerStride() == mask.cols(), "mask", "must be C-contiguous");
    require(((mask.array() == Scalar(0)) || (mask.array() == Scalar(1))).all(), "mask",
            "entries must be 0 or 1");
    Objective o(LossKind::Completion, target, mask.data(), nullptr, 0);
    o.set_c(c);
    return o;
  }

  /// f = (c/2)||W_{L:1} X - Y||^2, X is d_0 x n, Y is d_L x n ("mean": c = 1/(d_L n)).
  static Objective regression(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& y, double c) {
    check_finite(x, "X");
    check_finite(y, "Y");
    require(x.cols() == y.cols(), "Y", "must have as many columns (samples) as X");
    Objective o(LossKind::Regression, y, nullptr, x.data(), x.rows());
    o.set_c(c);
    return o;
  }

  /// Classification with the squared loss (MATH.md §5): f = (c/2)||W_{L:1} X - Y||^2 with Y the
  /// K x n one-hot matrix of the labels (Y_{k,i} = 1 iff sample i is of class k) ("mean":
  /// c = 1/(K n)): the regression loss with one-hot targets.
  static Objective classification(const ConstMatRef<Scalar>& x, const ConstMatRef<Scalar>& onehot,
                                  double c) {
    Objective o = regression(x, onehot, c);
    o.kind_ = LossKind::Classification;
    for (Index j = 0; j < onehot.cols(); ++j) {
      const auto col = onehot.col(j);
      require(((col.array() == Scalar(0)) || (col.array() == Scalar(1))).all() && col.sum() == Scalar(1),
              "Y", "must be one-hot: every column a single 1, zeros elsewhere");
    }
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

  /// The reduction constant c of the loss: computed once per problem by the Python layer
  /// (Problem.c: 1 for "sum", 1 / (number of output entries) for "mean"; a compressed network
  /// keeps the wide network's) and handed over with it, never derived here.
  void set_c(double c) {
    require(std::isfinite(c) && c > 0, "c", "must be finite and > 0");
    c_ = c;
  }

  LossKind kind() const { return kind_; }
  double c() const { return c_; }
  bool has_test_loss() const { return kind_ == LossKind::Completion; }
  bool has_input() const { return kind_ == LossKind::Regression || kind_ == LossKind::Classification; }
  /// d_L: rows of the network output.
  Index out_dim() const { return outer_ ? left_.cols() : target_.rows(); }
  /// d_0: input size of the network.
  Index in_dim() const { return has_input() ? x_.rows() : outer_ ? right_.cols() : target_.cols(); }
  /// Columns of every prefix product W_{l:1} X (n for regression, d_0 otherwise).
  Index n_cols() const { return outer_ ? right_.cols() : target_.cols(); }
  const Map& input() const { return x_; }

  /// Given the output P = W_{L:1} (X), writes the residual R = c * mask (.) (P - target) into
  /// r (preallocated, same shape) and returns the data part of the loss (and the test loss).
  LossValue residual(const M& p, M& r) const {
    if (outer_) {
      gemm(tmp_, p, false, right_, true);
      gemm(wide_, left_, false, tmp_, false);
      const LossValue v = wide_residual(wide_, wide_);
      gemm(tmp2_, wide_, false, right_, false);
      gemm(r, left_, true, tmp2_, false);
      return v;
    }
    return wide_residual(p, r);
  }

 private:
  /// One pass over the output: r = c * mask (.) (p - target), the train sum and (completion)
  /// the test sum on the complement of the mask, both in double.  p may alias r.
  LossValue wide_residual(const M& p, M& r) const {
    const Index n = r.size();
    const Scalar* pp = p.data();
    const Scalar* tp = target_.data();
    Scalar* rp = r.data();
    const Scalar cs = static_cast<Scalar>(c_);
    double train = 0.0, test = 0.0;
    if (kind_ == LossKind::Completion) {
      const Scalar* mp = mask_.data();
#pragma omp simd reduction(+ : train, test)
      for (Index i = 0; i < n; ++i) {
        const Scalar e = pp[i] - tp[i];
        const double e2 = static_cast<double>(e) * static_cast<double>(e);
        train += static_cast<double>(mp[i]) * e2;
        test += static_cast<double>(Scalar(1) - mp[i]) * e2;
        rp[i] = cs * (mp[i] * e);
      }
    } else {
#pragma omp simd reduction(+ : train)
      for (Index i = 0; i < n; ++i) {
        const Scalar e = pp[i] - tp[i];
        train += static_cast<double>(e) * static_cast<double>(e);
        rp[i] = cs * e;
      }
    }
    LossValue v;
    v.train = 0.5 * c_ * train;
    if (kind_ == LossKind::Completion) v.test = 0.5 * c_ * test;
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
