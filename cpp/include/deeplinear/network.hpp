// The deep linear network and its gradient engine (MATH.md §1).
//
// Gradient of every layer with prefix products and one backward sweep:
//   P_0 = X (or I), P_l = W_l P_{l-1};  S_L = R = c M (.) (P_L - Phi),  S_{l-1} = W_l^T S_l;
//   grad_l = S_l P_{l-1}^T + lambda W_l       (grad_1 = S_1 for factorization: no product).
// That is 3(L-1) GEMMs per step for square layers.  All buffers are allocated once, in the
// constructor of Engine; a step allocates nothing.
#pragma once

#include "deeplinear/objective.hpp"
#include "deeplinear/types.hpp"

#include <utility>

namespace deeplinear {

template <class Scalar>
class Network {
 public:
  using M = Mat<Scalar>;

  explicit Network(std::vector<M> weights) : w_(std::move(weights)) { validate(); }

  std::size_t depth() const { return w_.size(); }
  /// Layer sizes (d_0, ..., d_L).
  std::vector<Index> dims() const {
    std::vector<Index> d{w_.front().cols()};
    for (const auto& w : w_) d.push_back(w.rows());
    return d;
  }
  std::vector<M>& weights() { return w_; }
  const std::vector<M>& weights() const { return w_; }

  /// W_L ... W_1.
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
  void validate() const {
    require(!w_.empty(), "weights", "need at least one layer");
    for (std::size_t l = 0; l < w_.size(); ++l) {
      require(w_[l].rows() > 0 && w_[l].cols() > 0, "weights", "layers must not be empty");
      require(w_[l].allFinite(), "weights", "layer " + std::to_string(l + 1) + " contains NaN or Inf");
      if (l > 0)
        require(w_[l].cols() == w_[l - 1].rows(), "weights",
                "layer " + std::to_string(l + 1) + " has " + std::to_string(w_[l].cols()) +
                    " columns but layer " + std::to_string(l) + " has " +
                    std::to_string(w_[l - 1].rows()) + " rows");
    }
  }

  std::vector<M> w_;
};

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
    // P_1 = W_1 needs no buffer for factorization/completion.
    for (std::size_t l = 1; l <= L; ++l) {
      if (l > 1 || obj.has_input()) prefix_[l].resize(dims[l], n);
      sweep_[l].resize(dims[l], n);
      grad_[l].resize(dims[l], dims[l - 1]);
    }
  }

  /// Forward pass and loss at the current weights; leaves the residual in S_L.  Also checks
  /// that the weights are finite (through their norms, needed for the weight-decay term).
  LossValue evaluate(const Network<Scalar>& net) {
    const auto& w = net.weights();
    const std::size_t L = w.size();
    if (obj_.has_input()) prefix_[1].noalias() = w[0] * obj_.input();
    for (std::size_t l = 2; l <= L; ++l) prefix_[l].noalias() = w[l - 1] * prefix(w, l - 1);
    LossValue v = obj_.residual(prefix(w, L), sweep_[L]);
    double wsq = 0.0;
    for (const auto& wl : w) wsq += squared_norm(wl);
    weight_sq_ = wsq;
    if (lambda_ != 0.0 || !std::isfinite(wsq)) v.train += 0.5 * lambda_ * wsq;
    if (!std::isfinite(wsq)) v.train = std::numeric_limits<double>::quiet_NaN();
    return v;
  }

  /// Backward sweep after evaluate(): computes grad_l for l = L..1 and calls
  /// visit(l, W_l, grad_l) right after each one (l is 1-based).  visit may update W_l in
  /// place: nothing computed later reads it.
  template <class Visit>
  void backward(Network<Scalar>& net, Visit&& visit) {
    auto& w = net.weights();
    const std::size_t L = w.size();
    for (std::size_t l = L; l >= 1; --l) {
      if (l > 1) sweep_[l - 1].noalias() = w[l - 1].transpose() * sweep_[l];
      M& g = grad_[l];
      if (l > 1)
        g.noalias() = sweep_[l] * prefix(w, l - 1).transpose();
      else if (obj_.has_input())
        g.noalias() = sweep_[1] * obj_.input().transpose();
      else
        g = sweep_[1];
      if (lambda_ != 0.0) g += static_cast<Scalar>(lambda_) * w[l - 1];
      visit(l, w[l - 1], g);
    }
  }

  /// Gradient of layer l (1-based) from the last backward().
  const M& gradient(std::size_t l) const { return grad_[l]; }
  double weight_sq() const { return weight_sq_; }

 private:
  /// P_l = W_{l:1} (X) for l >= 1: W_1 itself when there is no input, the buffer otherwise.
  const M& prefix(const std::vector<M>& w, std::size_t l) const {
    return (l == 1 && !obj_.has_input()) ? w[0] : prefix_[l];
  }

  const Objective<Scalar>& obj_;
  double lambda_;
  std::vector<M> prefix_, sweep_, grad_;
  double weight_sq_ = 0.0;
};

}  // namespace deeplinear
