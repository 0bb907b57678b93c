// The bulk value rho(t) of a compressed network (MATH.md §2-§3), in one place.
//
// For factorization with an orthogonal init trained by GD (or heavy ball / Nesterov), the
// d - 2r singular values of every wide layer that the 2r x 2r blocks do not carry all equal
// |rho(t)|, and their part of the wide loss is (c/2) n rho^{2L} + (lambda/2) L n rho^2 with
// n = d - 2r.  rho follows a scalar recursion (MATH.md §2):
//
//   GD:          rho <- rho - lr (c rho^{2L-1} + lambda rho)
//   heavy ball:  b <- mu b + g,  rho <- rho - lr b                (g = c rho^{2L-1} + lambda rho)
//   Nesterov:    b <- mu b + g,  rho <- rho - lr (mu b + g)
//
// The trainer advances a BulkValue after every update of a compressed network's blocks (and
// checkpoints its State: rho and the trace b); deeplinear.rho_schedule is rho_schedule() below.
// Every product is rounded on its own (never fused into a multiply-add), so the values do not
// depend on the compiler's contraction of a * b + c.
#pragma once

#include "deeplinear/types.hpp"

#include <cmath>
#include <limits>
#include <vector>

namespace deeplinear {

class BulkValue {
 public:
  /// The complete state of the recursion (what a checkpoint stores).
  struct State {
    double rho = 0.0;
    double b = 0.0;  // heavy ball's trace of rho (0 without momentum)
  };

  /// rho: its value now; count: n = d - 2r (the multiplicity of |rho| in every layer);
  /// c: the wide problem's reduction constant; lr, weight_decay, momentum, nesterov: the
  /// optimizer's (GD).
  BulkValue(double rho, double count, std::size_t depth, double c, double lr, double weight_decay,
            double momentum, bool nesterov)
      : n_(count), c_(c), lr_(lr), lam_(weight_decay), mu_(momentum), nesterov_(nesterov),
        depth_(static_cast<double>(depth)), p_(2.0 * depth_ - 1.0) {
    state_.rho = rho;
  }

  double rho() const { return state_.rho; }
  double count() const { return n_; }
  const State& state() const { return state_; }
  void set_state(const State& s) {
    state_ = s;
    pw_rho_ = std::numeric_limits<double>::quiet_NaN();
  }

  /// The wide loss terms at the current rho (added to the blocks' loss):
  /// 0.5 c n rho^{2L} + 0.5 lam L n rho^2, with rho^{2L} = rho^{2L-1} rho (the power the next
  /// advance() needs, computed once).
  double loss_term() {
    const double rho = state_.rho;
    pw_ = std::pow(rho, p_);
    pw_rho_ = rho;
    return exact_mul(0.5 * c_ * n_, pw_ * rho) + exact_mul(0.5 * lam_ * depth_ * n_, rho * rho);
  }

  /// One step of the recursion.
  void advance() {
    double& rho = state_.rho;
    // rho^{2L-1} (reused from loss_term at the same rho; NaN never compares equal)
    const double pw = pw_rho_ == rho ? pw_ : std::pow(rho, p_);
    if (mu_ == 0.0 && lam_ == 0.0) {
      rho = rho - exact_mul(lr_, exact_mul(c_, pw));
      return;
    }
    const double g = exact_mul(c_, pw) + exact_mul(lam_, rho);
    if (mu_ == 0.0) {
      rho = rho - exact_mul(lr_, g);
      return;
    }
    double& b = state_.b;
    b = exact_mul(mu_, b) + g;
    rho = rho - exact_mul(lr_, nesterov_ ? exact_mul(mu_, b) + g : b);
  }

 private:
  /// a * b rounded to double before any later addition (the value passes through a volatile,
  /// so the compiler cannot contract it into an FMA).
  static double exact_mul(double a, double b) {
    volatile double p = a * b;
    return p;
  }

  State state_;
  double n_, c_, lr_, lam_, mu_;
  bool nesterov_;
  double depth_, p_;
  double pw_ = std::numeric_limits<double>::quiet_NaN();
  double pw_rho_ = std::numeric_limits<double>::quiet_NaN();
};

/// rho(t) for t = 0..steps from rho(0) = init_scale: the recursion above (BulkValue::advance).
/// Overflow gives inf / NaN as IEEE arithmetic does (no exception).
inline std::vector<double> rho_schedule(double init_scale, double lr, std::size_t depth, long steps,
                                        double weight_decay, double c, double momentum, bool nesterov) {
  require(steps >= 0, "steps", "must be >= 0");
  BulkValue bulk(init_scale, 0.0, depth, c, lr, weight_decay, momentum, nesterov);
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(steps) + 1);
  out.push_back(bulk.rho());
  for (long t = 0; t < steps; ++t) {
    bulk.advance();
    out.push_back(bulk.rho());
  }
  return out;
}

}  // namespace deeplinear
