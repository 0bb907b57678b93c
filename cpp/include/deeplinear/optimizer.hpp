// Optimizers with optax's update rules (including where epsilon goes), with an optional step
// scale per layer (set_step_scale: compressed completion's outer factors move at alpha lr).
//
// The gradient g already contains the weight-decay term lambda W of the loss f (MATH.md §1), so
// weight decay is the same L2 term for every optimizer (Adam on f, not AdamW).
//
//   GD:       B <- mu B + g;  W <- W - lr * (nesterov ? g + mu B : B)          (optax.sgd)
//   Adam:     m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  t <- t + 1;
//             W <- W - lr * m_hat / (sqrt(v_hat + eps_root) + eps),
//             m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)                   (optax.adam)
//   RMSProp:  v <- decay v + (1-decay) g^2   (v(0) = initial_scale);
//             u = g / sqrt(v + eps)     [centered: m <- decay m + (1-decay) g,
//                                         u = g / sqrt(v - m^2 + eps)];
//             then momentum as GD on u: B <- mu B + u; W <- W - lr (nesterov ? u + mu B : B)
//                                                                              (optax.rmsprop)
#pragma once

#include "deeplinear/types.hpp"

namespace deeplinear {

enum class OptKind { GD, Adam, RMSProp };

struct OptimizerConfig {
  OptKind kind = OptKind::GD;
  double lr = 0.1;
  double momentum = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  // Adam
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-8;
  double eps_root = 0.0;
  // RMSProp (eps above is shared)
  double decay = 0.9;
  double initial_scale = 0.0;
  bool centered = false;

  void validate() const {
    require(std::isfinite(lr) && lr > 0, "lr", "must be finite and > 0");
    require(std::isfinite(momentum) && momentum >= 0 && momentum < 1, "momentum",
            "must be in [0, 1)");
    require(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay",
            "must be finite and >= 0");
    require(std::isfinite(b1) && b1 >= 0 && b1 < 1, "b1", "must be in [0, 1)");
    require(std::isfinite(b2) && b2 >= 0 && b2 < 1, "b2", "must be in [0, 1)");
    require(std::isfinite(eps) && eps >= 0, "eps", "must be finite and >= 0");
    require(std::isfinite(eps_root) && eps_root >= 0, "eps_root", "must be finite and >= 0");
    require(std::isfinite(decay) && decay >= 0 && decay < 1, "decay", "must be in [0, 1)");
    require(std::isfinite(initial_scale) && initial_scale >= 0, "initial_scale",
            "must be finite and >= 0");
    if (kind == OptKind::RMSProp)
      require(eps > 0 || initial_scale > 0, "eps", "RMSProp needs eps > 0 or initial_scale > 0");
  }
};

template <class Scalar>
class Optimizer {
 public:
  using M = Mat<Scalar>;

  /// State buffers shaped like the weights; allocated here, never per step.
  Optimizer(const OptimizerConfig& cfg, const std::vector<M>& weights) { reset(cfg, weights); }

  /// A fresh state for `cfg` (count 0, buffers at their initial values, step scales 1), the
  /// buffers kept where they have the right shape (an optimizer reused by the next call).
  void reset(const OptimizerConfig& cfg, const std::vector<M>& weights) {
    cfg.validate();
    cfg_ = cfg;
    count_ = 0;
    scale_.clear();
    const bool trace = cfg_.momentum != 0.0;
    const bool first = cfg_.kind == OptKind::Adam || (cfg_.kind == OptKind::RMSProp && cfg_.centered);
    const bool second = cfg_.kind != OptKind::GD;
    const Scalar second0 = static_cast<Scalar>(cfg_.kind == OptKind::RMSProp ? cfg_.initial_scale : 0.0);
    const std::size_t L = weights.size();
    trace_.resize(L);
    first_.resize(L);
    second_.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
      fill(trace_[l], trace, weights[l], Scalar(0));
      fill(first_[l], first, weights[l], Scalar(0));
      fill(second_[l], second, weights[l], second0);
    }
  }

  const OptimizerConfig& config() const { return cfg_; }
  long count() const { return count_; }

  /// Call once per step, before the layer updates.
  void begin_step() { ++count_; }

  /// Step scale of layer l (1-based): its update is scaled by s (the learning rate of that layer
  /// is s lr, for every optimizer: the state (trace, moments) is the unscaled one).  Compressed
  /// completion's discrepant learning rate alpha of the outer factors U, V (MATH.md §4).  Used
  /// by update(); the fused path (fusable()) ignores it.
  void set_step_scale(std::size_t l, double s) {
    require(std::isfinite(s) && s >= 0, "outer_lr_scale", "must be finite and >= 0");
    if (scale_.size() < l) scale_.resize(l, 1.0);
    scale_[l - 1] = s;
  }
  double step_scale(std::size_t l) const { return l <= scale_.size() ? scale_[l - 1] : 1.0; }

  /// Update layer l (1-based) in place from its gradient g (g may be overwritten).
  void update(std::size_t l, M& w, M& g) {
    const Scalar lr = static_cast<Scalar>(cfg_.lr * step_scale(l));
    switch (cfg_.kind) {
      case OptKind::GD:
        apply_trace(l, w, g, lr);
        break;
      case OptKind::Adam: {
        const Scalar b1 = static_cast<Scalar>(cfg_.b1), b2 = static_cast<Scalar>(cfg_.b2);
        M& m = first_[l - 1];
        M& v = second_[l - 1];
        m = b1 * m + (Scalar(1) - b1) * g;
        v.array() = b2 * v.array() + (Scalar(1) - b2) * g.array().square();
        const Scalar c1 = static_cast<Scalar>(1.0 - std::pow(cfg_.b1, double(count_)));
        const Scalar c2 = static_cast<Scalar>(1.0 - std::pow(cfg_.b2, double(count_)));
        const Scalar eps = static_cast<Scalar>(cfg_.eps), eps_root = static_cast<Scalar>(cfg_.eps_root);
        g.array() = (m.array() / c1) / ((v.array() / c2 + eps_root).sqrt() + eps);
        apply_trace(l, w, g, lr);
        break;
      }
      case OptKind::RMSProp: {
        const Scalar d = static_cast<Scalar>(cfg_.decay), eps = static_cast<Scalar>(cfg_.eps);
        M& v = second_[l - 1];
        v.array() = d * v.array() + (Scalar(1) - d) * g.array().square();
        if (cfg_.centered) {
          M& m = first_[l - 1];
          m = d * m + (Scalar(1) - d) * g;
          g.array() = g.array() / (v.array() - m.array().square() + eps).sqrt();
        } else {
          g.array() = g.array() / (v.array() + eps).sqrt();
        }
        apply_trace(l, w, g, lr);
        break;
      }
    }
  }

  /// Plain GD and heavy-ball momentum are linear in the gradient, so the trainer folds them into
  /// the gradient GEMM (Engine::backward_fused): T <- beta T + alpha G with G = S P^T the data
  /// gradient, then finish_fused.  Same update as update(), one GEMM instead of GEMM + passes.
  bool fusable() const { return cfg_.kind == OptKind::GD && !(cfg_.momentum != 0.0 && cfg_.nesterov); }
  /// T: the weights themselves (plain GD) or the trace (momentum).
  M& fused_target(std::size_t l, M& w) { return cfg_.momentum == 0.0 ? w : trace_[l - 1]; }
  /// Plain GD: W <- (1 - lr lambda) W - lr G.  Momentum: B <- mu B + G (+ lambda W in finish).
  Scalar fused_alpha() const { return static_cast<Scalar>(cfg_.momentum == 0.0 ? -cfg_.lr : 1.0); }
  Scalar fused_beta() const {
    return static_cast<Scalar>(cfg_.momentum == 0.0 ? 1.0 - cfg_.lr * cfg_.weight_decay : cfg_.momentum);
  }
  void finish_fused(std::size_t l, M& w, M& t) {
    if (cfg_.momentum == 0.0) return;
    if (cfg_.weight_decay != 0.0) t += static_cast<Scalar>(cfg_.weight_decay) * w;
    w.noalias() -= static_cast<Scalar>(cfg_.lr) * t;
  }

  /// State access (for checkpoints): buffers of layer l (1-based), empty when unused.
  M& trace(std::size_t l) { return trace_[l - 1]; }
  M& first_moment(std::size_t l) { return first_[l - 1]; }
  M& second_moment(std::size_t l) { return second_[l - 1]; }
  void set_count(long c) { count_ = c; }

 private:
  /// Heavy-ball / Nesterov trace (optax.trace) on the direction u, then W -= lr * step.
  /// (Adam carries no trace: its momentum is zero unless asked for.)
  void apply_trace(std::size_t l, M& w, const M& u, Scalar lr) {
    if (cfg_.momentum == 0.0) {
      w.noalias() -= lr * u;
      return;
    }
    const Scalar mu = static_cast<Scalar>(cfg_.momentum);
    M& b = trace_[l - 1];
    b = mu * b + u;
    if (cfg_.nesterov)
      w.noalias() -= lr * (u + mu * b);
    else
      w.noalias() -= lr * b;
  }

  /// A state buffer shaped like w, every entry v (an empty matrix when `used` is false).
  static void fill(M& b, bool used, const M& w, Scalar v) {
    if (!used) {
      b.resize(0, 0);
      return;
    }
    b.resize(w.rows(), w.cols());  // no reallocation when the shape is kept
    b.setConstant(v);
  }

  OptimizerConfig cfg_;
  long count_ = 0;
  std::vector<M> trace_, first_, second_;
  std::vector<double> scale_;  // per-layer step scale (empty: all 1)
};

}  // namespace deeplinear
