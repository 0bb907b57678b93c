// The deep linear network and its gradient engine (MATH.md §1).
//
// Gradient of every layer with prefix products and one backward sweep:
//   P_0 = X (or I), P_l = W_l P_{l-1};  S_L = R = c M (.) (P_L - Phi),  S_{l-1} = W_l^T S_l;
//   grad_l = S_l P_{l-1}^T + lambda W_l       (grad_1 = S_1 for factorization: no product).
// That is 3(L-1) GEMMs per step for square layers.  All buffers are allocated once (the
// constructor of Engine, the gradient buffers on the first backward()); a step allocates
// nothing.  Plain GD and heavy-ball momentum fold their update into the gradient GEMM
// (backward_fused), so the gradients are never stored.
//
// A ReLU network (activation.hpp) applies relu to every hidden P_l (l < L, not the output) and
// masks the sweep S_{l-1} by the pattern of P_{l-1} > 0: the same GEMMs plus one elementwise
// pass per hidden layer and direction, no extra buffer (P_1 then needs its own buffer also
// without input).
#pragma once

#include "deeplinear/activation.hpp"
#include "deeplinear/gemm.hpp"
#include "deeplinear/objective.hpp"
#include "deeplinear/types.hpp"

#include <cstdint>
#include <utility>

namespace deeplinear {

template <class Scalar>
class Network {
 public:
  using M = Mat<Scalar>;

  explicit Network(std::vector<M> weights, Activation activation = Activation::Identity)
      : w_(std::move(weights)), act_(activation) {
    validate(true);
  }
  /// Weights whose entries the caller has checked to be finite (copy_checked): validated
  /// without a second pass over them.
  struct Checked {};
  Network(std::vector<M> weights, Activation activation, Checked)
      : w_(std::move(weights)), act_(activation) {
    validate(false);
  }

  std::size_t depth() const { return w_.size(); }
  /// The activation of the hidden layers (fixed for the network's lifetime).
  Activation activation() const { return act_; }
  /// True when a hidden activation is applied (ReLU with at least one hidden layer).
  bool nonlinear() const { return act_ != Activation::Identity && w_.size() > 1; }
  /// Layer sizes (d_0, ..., d_L).
  std::vector<Index> dims() const {
    std::vector<Index> d{w_.front().cols()};
    for (const auto& w : w_) d.push_back(w.rows());
    return d;
  }
  /// Mutable access counts as a change of the weights (version()); read through the const
  /// overload (std::as_const) where nothing is written.
  std::vector<M>& weights() {
    ++version_;
    return w_;
  }
  const std::vector<M>& weights() const { return w_; }
  /// Changes whenever the weights may have changed (every mutable access to them): what a
  /// cached forward pass of these weights is checked against (Engine::evaluate).
  std::uint64_t version() const { return version_; }

  /// W_L ... W_1 (the end-to-end map of the linear network; a ReLU network has none: callers
  /// check nonlinear() first).
  M end_to_end() const {
    M p = w_.front();
    for (std::size_t l = 1; l < w_.size(); ++l) p = (w_[l] * p).eval();
    return p;
  }

  bool all_finite() const {
    for (const auto& w : w_)
      if (!w.allFinite()) return false;
    return true;
  }

 private:
  void validate(bool finite) const {
    require(!w_.empty(), "weights", "need at least one layer");
    for (std::size_t l = 0; l < w_.size(); ++l) {
      require(w_[l].rows() > 0 && w_[l].cols() > 0, "weights", "layers must not be empty");
      if (finite)
        require(w_[l].allFinite(), "weights", "layer " + std::to_string(l + 1) + " contains NaN or Inf");
      if (l > 0)
        require(w_[l].cols() == w_[l - 1].rows(), "weights",
                "layer " + std::to_string(l + 1) + " has " + std::to_string(w_[l].cols()) +
                    " columns but layer " + std::to_string(l) + " has " +
                    std::to_string(w_[l - 1].rows()) + " rows");
    }
  }

  std::vector<M> w_;
  Activation act_;
  std::uint64_t version_ = 0;
};

/// Copies the rows x cols matrix at `src`, whose elements are `row_stride` apart down a column
/// and `col_stride` along a row (any NumPy layout: C, Fortran, a strided or reversed view), into
/// `dst` (row-major, resized), and checks every row for NaN / Inf right after writing it, while
/// it is in cache: one pass over the source and one over the destination.  Returns false (dst
/// then partly written) when an entry is not finite.
template <class Scalar>
bool copy_checked(Mat<Scalar>& dst, const Scalar* src, Index rows, Index cols, Index row_stride,
                  Index col_stride) {
  using Row = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
  dst.resize(rows, cols);
  for (Index i = 0; i < rows; ++i) {
    auto out = dst.row(i);
    if (col_stride == 1)
      out = Eigen::Map<const Row>(src + i * row_stride, cols);
    else
      out = Eigen::Map<const Row, 0, Eigen::InnerStride<>>(src + i * row_stride, cols,
                                                             Eigen::InnerStride<>(col_stride));
    if (!out.allFinite()) return false;
  }
  return true;
}

/// Forward pass on inputs x (d_0 x n, samples as columns): the output W_L H_{L-1}, and with
/// `hidden` the hidden outputs [H_1, ..., H_{L-1}] (H_l = sigma(W_l H_{l-1})) stored there.
template <class Scalar>
Mat<Scalar> forward(const Network<Scalar>& net, const ConstMatRef<Scalar>& x, std::vector<Mat<Scalar>>* hidden = nullptr) {
  const auto& w = net.weights();
  const std::size_t L = w.size();
  require(x.cols() > 0 && x.rows() == w.front().cols(), "X",
          "must have d_0 = " + std::to_string(w.front().cols()) + " rows and at least one column");
  require(x.rows() == 1 || x.outerStride() == x.cols(), "X", "must be C-contiguous");
  require(x.allFinite(), "X", "contains NaN or Inf");
  if (hidden) hidden->assign(L - 1, Mat<Scalar>());
  Mat<Scalar> prev, cur;
  for (std::size_t l = 1; l <= L; ++l) {
    cur.resize(w[l - 1].rows(), x.cols());
    if (l == 1)
      gemm(cur, w[0], false, x, false);
    else
      gemm(cur, w[l - 1], false, prev, false);
    if (l < L && net.activation() == Activation::ReLU) relu_inplace(cur);
    if (l < L && hidden) (*hidden)[l - 1] = cur;
    std::swap(prev, cur);
  }
  return prev;
}

/// Preallocated workspace and the forward / backward passes for one (network shape, objective).
template <class Scalar>
class Engine {
 public:
  using M = Mat<Scalar>;

  Engine(const Network<Scalar>& net, const Objective<Scalar>& obj, double weight_decay)
      : obj_(obj), lambda_(weight_decay) {
    const auto dims = net.dims();
    require(obj.out_dim() == dims.back(), "problem",
            "output size " + std::to_string(obj.out_dim()) + " does not match the network's d_L = " +
                std::to_string(dims.back()));
    require(obj.in_dim() == dims.front(), "problem",
            "input size " + std::to_string(obj.in_dim()) + " does not match the network's d_0 = " +
                std::to_string(dims.front()));
    require(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay",
            "must be finite and >= 0");
    const std::size_t L = net.depth();
    const Index n = obj.n_cols();
    prefix_.resize(L + 1);
    sweep_.resize(L + 1);
    grad_.resize(L + 1);
    // P_1 = W_1 needs no buffer for factorization/completion.  The gradient buffers are only
    // allocated by the first backward() (the fused update needs none).
    relu_ = net.nonlinear();
    p1_is_w1_ = !obj.has_input() && !relu_;
    for (std::size_t l = 1; l <= L; ++l) {
      if (l > 1 || !p1_is_w1_) prefix_[l].resize(dims[l], n);
      sweep_[l].resize(dims[l], n);
    }
  }

  /// Forward pass and loss at the current weights; leaves the residual in S_L.  The weight
  /// norms (the weight-decay term, and an explicit finiteness check of the weights) are
  /// computed when `weight_norms` is set or lambda > 0; otherwise non-finite weights show
  /// through the loss: a non-finite entry of W_l makes a whole row of P_l non-finite (inf * 0
  /// and nan * x are nan), and so entries of the output and the loss (also masked ones:
  /// 0 * inf is nan).
  ///
  /// Cached: while the network's weights are unchanged since the last evaluate (the same
  /// Network::version()), the prefix products, the residual and the data loss in the buffers
  /// are those of the current weights and are reused as they are (the final loss of one
  /// training call is the first loss of the next; a backward sweep or any mutable access to
  /// the weights changes the version).  The result is the one a fresh pass would give.
  LossValue evaluate(const Network<Scalar>& net, bool weight_norms = true) {
    const auto& w = net.weights();
    const std::size_t L = w.size();
    if (!(forward_valid_ && forward_version_ == net.version())) {
      if (obj_.has_input())
        gemm(prefix_[1], w[0], false, obj_.input(), false);
      else if (!p1_is_w1_)
        prefix_[1] = w[0];  // a ReLU network on the identity input: P_1 = relu(W_1)
      for (std::size_t l = 1; l <= L; ++l) {
        if (l > 1) gemm(prefix_[l], w[l - 1], false, prefix(w, l - 1), false);
        if (relu_ && l < L) relu_inplace(prefix_[l]);
      }
      data_loss_ = obj_.residual(prefix(w, L), sweep_[L]);
      forward_valid_ = true;
      norms_valid_ = false;
      forward_version_ = net.version();
    }
    LossValue v = data_loss_;
    if (!weight_norms && lambda_ == 0.0) return v;
    if (!norms_valid_) {
      double wsq = 0.0;
      for (const auto& wl : w) wsq += squared_norm(wl);
      weight_sq_ = wsq;
      norms_valid_ = true;
    }
    const double wsq = weight_sq_;
    if (lambda_ != 0.0 || !std::isfinite(wsq)) v.train += 0.5 * lambda_ * wsq;
    if (!std::isfinite(wsq)) v.train = std::numeric_limits<double>::quiet_NaN();
    return v;
  }

  /// The weight-decay coefficient lambda of the next evaluate / backward (a reused engine).
  void set_weight_decay(double weight_decay) {
    require(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay", "must be finite and >= 0");
    lambda_ = weight_decay;
  }

  /// Backward sweep after evaluate(): computes grad_l for l = L..1 and calls
  /// visit(l, W_l, grad_l) right after each one (l is 1-based).  visit may update W_l in
  /// place and overwrite grad_l: nothing computed later reads them.
  template <class Visit>
  void backward(Network<Scalar>& net, Visit&& visit) {
    auto& w = net.weights();
    const std::size_t L = w.size();
    for (std::size_t l = L; l >= 1; --l) {
      if (l > 1) sweep_down(w, l);
      // grad_1 = S_1 without input: S_1 itself serves as the buffer (nothing reads it later).
      M& g = (l == 1 && !obj_.has_input()) ? sweep_[1] : grad_buffer(l, w[l - 1]);
      if (l > 1)
        gemm(g, sweep_[l], false, prefix(w, l - 1), true);
      else if (obj_.has_input())
        gemm(g, sweep_[1], false, obj_.input(), true);
      if (lambda_ != 0.0) g += static_cast<Scalar>(lambda_) * w[l - 1];
      visit(l, w[l - 1], g);
    }
  }

  /// Backward sweep fused with an update that is linear in the data gradient G_l = S_l P_{l-1}^T:
  /// T_l <- beta T_l + alpha G_l in one GEMM (no gradient buffer, no extra pass), with
  /// T_l = target(l, W_l), then finish(l, W_l, T_l).  Plain GD: T_l = W_l, alpha = -lr,
  /// beta = 1 - lr lambda; heavy-ball momentum: T_l the trace, alpha = 1, beta = mu.  The weight-
  /// decay term lambda W_l is left to the caller (it is in beta for plain GD).
  template <class Target, class Finish>
  void backward_fused(Network<Scalar>& net, Scalar alpha, Scalar beta, Target&& target, Finish&& finish) {
    auto& w = net.weights();
    const std::size_t L = w.size();
    for (std::size_t l = L; l >= 1; --l) {
      if (l > 1) sweep_down(w, l);
      M& t = target(l, w[l - 1]);
      if (l > 1) {
        gemm(t, sweep_[l], false, prefix(w, l - 1), true, alpha, beta);
      } else if (obj_.has_input()) {
        gemm(t, sweep_[1], false, obj_.input(), true, alpha, beta);
      } else if (beta == Scalar(1)) {
        t.noalias() += alpha * sweep_[1];
      } else {
        t = beta * t + alpha * sweep_[1];
      }
      finish(l, w[l - 1], t);
    }
  }

  double weight_sq() const { return weight_sq_; }

 private:
  /// P_l = W_{l:1} (X) for l >= 1 (with the activations of a ReLU network): W_1 itself for a
  /// linear network without input, the buffer otherwise.
  const M& prefix(const std::vector<M>& w, std::size_t l) const {
    return (l == 1 && p1_is_w1_) ? w[0] : prefix_[l];
  }

  /// S_{l-1} = W_l^T S_l, masked by the activation pattern of P_{l-1} in a ReLU network.
  void sweep_down(const std::vector<M>& w, std::size_t l) {
    gemm(sweep_[l - 1], w[l - 1], true, sweep_[l], false);
    if (relu_) relu_mask(sweep_[l - 1], prefix_[l - 1]);
  }

  /// Gradient buffer of layer l, allocated on first use.
  M& grad_buffer(std::size_t l, const M& w) {
    if (grad_[l].rows() != w.rows() || grad_[l].cols() != w.cols()) grad_[l].resize(w.rows(), w.cols());
    return grad_[l];
  }

  const Objective<Scalar>& obj_;
  double lambda_;
  bool relu_ = false, p1_is_w1_ = true;
  std::vector<M> prefix_, sweep_, grad_;
  double weight_sq_ = 0.0;
  // evaluate()'s cache: the buffers and data_loss_ hold the forward pass of the weights at
  // forward_version_; weight_sq_ their squared norm when norms_valid_
  LossValue data_loss_;
  std::uint64_t forward_version_ = 0;
  bool forward_valid_ = false, norms_valid_ = false;
};

}  // namespace deeplinear
