// The training loop: many steps inside C++, losses recorded every `record_every` steps.
//
// Step t evaluates the loss at the current weights (the loss "after t steps"), records it when
// t is a multiple of record_every, stops on a non-finite loss or weights (Diverged) or when the
// loss is <= tol (Converged), and otherwise does one backward sweep with in-place updates.
// run(n) does at most n updates and may be called repeatedly (the Python layer runs chunks of
// steps between progress-bar updates); finish() records the loss at the final weights.
#pragma once

#include "deeplinear/network.hpp"
#include "deeplinear/objective.hpp"
#include "deeplinear/optimizer.hpp"
#include "deeplinear/tracking.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <optional>

namespace deeplinear {

struct TrainOptions {
  long record_every = 1;
  double tol = -1.0;       // stop when loss <= tol; a negative value disables it
  long expected_steps = 0; // to size the history up front (up to 2^16 records; grown beyond)
  // Added to the training loss at step t (t < size), before recording and the tol test: the
  // part of a wide network's loss that a compressed network does not carry (MATH.md §3).
  std::vector<double> loss_offset;
};

/// The bulk value rho(t) of a compressed network (MATH.md §2-§3): the common value of the
/// d - 2r singular values of every wide layer that the 2r x 2r blocks do not carry, and its part
/// of the wide loss, (c/2) n rho^{2L} + (lambda/2) L n rho^2 with n = d - 2r.  Advanced after
/// every update by the recursion of deeplinear.rho_schedule, bit for bit (GD:
/// rho <- rho - lr (c rho^{2L-1} + lambda rho); heavy ball / Nesterov with the trace b).
class BulkValue {
 public:
  BulkValue(double rho, double count, std::size_t depth, double c, const OptimizerConfig& cfg)
      : rho_(rho), n_(count), c_(c), lr_(cfg.lr), lam_(cfg.weight_decay), mu_(cfg.momentum),
        nesterov_(cfg.nesterov), depth_(static_cast<double>(depth)), p_(2.0 * depth_ - 1.0) {}

  double rho() const { return rho_; }

  /// The wide loss terms at the current rho (added to the blocks' loss):
  /// 0.5 c n rho^{2L} + 0.5 lam L n rho^2, with rho^{2L} = rho^{2L-1} rho (the power the next
  /// advance() needs, computed once).
  double loss_term() {
    pw_ = std::pow(rho_, p_);
    pw_rho_ = rho_;
    return exact_mul(0.5 * c_ * n_, pw_ * rho_) + exact_mul(0.5 * lam_ * depth_ * n_, rho_ * rho_);
  }

  /// One step of the recursion, in the operation order of rho_schedule (Python floats: every
  /// product rounded on its own, never fused into a multiply-add).
  void advance() {
    // rho^{2L-1} = pow(rho, 2L-1) as in rho_schedule (reused from loss_term at the same rho)
    const double pw = pw_rho_ == rho_ ? pw_ : std::pow(rho_, p_);
    if (mu_ == 0.0 && lam_ == 0.0) {
      rho_ = rho_ - exact_mul(lr_, exact_mul(c_, pw));
      return;
    }
    const double g = exact_mul(c_, pw) + exact_mul(lam_, rho_);
    if (mu_ == 0.0) {
      rho_ = rho_ - exact_mul(lr_, g);
      return;
    }
    b_ = exact_mul(mu_, b_) + g;
    rho_ = rho_ - exact_mul(lr_, nesterov_ ? exact_mul(mu_, b_) + g : b_);
  }

 private:
  /// a * b rounded to double before any later addition (the compiler may not contract it into
  /// an FMA: the value passes through a volatile).
  static double exact_mul(double a, double b) {
    volatile double p = a * b;
    return p;
  }

  double rho_, n_, c_, lr_, lam_, mu_;
  bool nesterov_;
  double depth_, p_;
  double b_ = 0.0;
  double pw_ = std::numeric_limits<double>::quiet_NaN(), pw_rho_ = std::numeric_limits<double>::quiet_NaN();
};

struct History {
  std::vector<long> steps;
  std::vector<double> train_loss;
  std::vector<double> test_loss;
};

template <class Scalar>
class Trainer {
 public:
  Trainer(Network<Scalar>& net, Objective<Scalar> obj, const OptimizerConfig& cfg,
          const TrainOptions& opts)
      : net_(net),
        obj_(std::move(obj)),
        opt_(cfg, net.weights()),
        engine_(net_, obj_, cfg.weight_decay),
        opts_(opts) {
    require(opts.record_every >= 1, "record_every", "must be >= 1");
    // The records expected, up to a cap: a large step budget that a tol ends early must not
    // allocate its whole history up front; beyond the cap the vectors grow as records come.
    constexpr long kReserveCap = 1L << 16;
    const std::size_t n = static_cast<std::size_t>(
        std::min(kReserveCap, std::max(0L, opts.expected_steps) / opts.record_every + 2));
    hist_.steps.reserve(n);
    hist_.train_loss.reserve(n);
    if (obj_.has_test_loss()) hist_.test_loss.reserve(n);
  }
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Runs at most n_steps updates.  Returns Running when they were all done, Converged or
  /// Diverged when the run stopped early (the step counter then stays where it stopped).
  Status run(long n_steps) {
    if (status_ != Status::Running) return status_;
    for (long k = 0; k < n_steps; ++k) {
      if (check_point() != Status::Running) return status_;
      opt_.begin_step();
      if (opt_.fusable()) {
        engine_.backward_fused(
            net_, opt_.fused_alpha(), opt_.fused_beta(),
            [this](std::size_t l, Mat<Scalar>& w) -> Mat<Scalar>& { return opt_.fused_target(l, w); },
            [this](std::size_t l, Mat<Scalar>& w, Mat<Scalar>& t) { opt_.finish_fused(l, w, t); });
      } else {
        engine_.backward(net_, [this](std::size_t l, Mat<Scalar>& w, Mat<Scalar>& g) {
          opt_.update(l, w, g);
        });
      }
      ++step_;
      if (bulk_) bulk_->advance();
    }
    return status_;
  }

  /// Evaluates (and records, if not yet recorded) the loss at the current weights.
  Status finish() {
    if (status_ == Status::Running) check_point(/*force_record=*/true);
    return status_;
  }

  /// Restores the progress of an earlier run (from a checkpoint): the step counter and the
  /// history.  The weights and the optimizer state are restored separately.
  void restore(long step, History h) {
    require(step >= 0, "step", "must be >= 0");
    step_ = step;
    hist_ = std::move(h);
    recorded_step_ = hist_.steps.empty() ? -1 : hist_.steps.back();
    status_ = Status::Running;
  }

  long step() const { return step_; }
  std::size_t depth() const { return net_.depth(); }
  Status status() const { return status_; }
  const History& history() const { return hist_; }
  LossValue last_loss() const { return last_; }
  Optimizer<Scalar>& optimizer() { return opt_; }

  /// Carries the bulk value of a compressed network from rho (its value now), with
  /// `count` = d - 2r bulk directions: its loss terms are added to every recorded loss and it
  /// advances with every update (exact compression, GD / momentum).  Before the first step.
  void set_bulk(double rho, double count, double c) {
    require(step_ == 0, "bulk", "must be set before the first step");
    require(std::isfinite(rho) && std::isfinite(count) && count >= 0, "bulk", "rho and count must be finite");
    bulk_.emplace(rho, count, net_.depth(), c, opt_.config());
  }
  bool has_bulk() const { return bulk_.has_value(); }
  /// rho after step() updates (NaN without a bulk value).
  double bulk_rho() const { return bulk_ ? bulk_->rho() : std::numeric_limits<double>::quiet_NaN(); }

  /// Records singular values / subspaces at every `track_every`-th step (and the last one).
  void set_tracker(std::unique_ptr<Tracker<Scalar>> tracker) { tracker_ = std::move(tracker); }
  const Tracker<Scalar>* tracker() const { return tracker_.get(); }
  Tracker<Scalar>* tracker() { return tracker_.get(); }  // restoring its state from a checkpoint

 private:
  /// Loss at the current weights, recording and stopping rules.
  Status check_point(bool force_record = false) {
    // Without weight decay the weight norms are only computed at the end of the run (an
    // explicit finiteness check of the weights): a non-finite weight makes the output, hence the
    // loss, non-finite anyway (IEEE: inf * 0 and anything * nan are nan, inf * x is inf).
    const bool record_step = step_ % opts_.record_every == 0 || force_record;
    last_ = engine_.evaluate(net_, /*weight_norms=*/force_record);
    if (static_cast<std::size_t>(step_) < opts_.loss_offset.size()) last_.train += opts_.loss_offset[step_];
    if (bulk_) last_.train += bulk_->loss_term();
    const bool finite = std::isfinite(last_.train) && (!obj_.has_test_loss() || std::isfinite(last_.test));
    if (!finite) return status_ = Status::Diverged;
    const bool stop = opts_.tol >= 0 && last_.train <= opts_.tol;
    if ((record_step || stop) && recorded_step_ != step_) {
      hist_.steps.push_back(step_);
      hist_.train_loss.push_back(last_.train);
      if (obj_.has_test_loss()) hist_.test_loss.push_back(last_.test);
      recorded_step_ = step_;
    }
    if (tracker_ && (tracker_->due(step_) || force_record || stop)) tracker_->record(step_, net_.weights());
    if (stop) status_ = Status::Converged;
    return status_;
  }

  Network<Scalar>& net_;
  Objective<Scalar> obj_;
  Optimizer<Scalar> opt_;
  Engine<Scalar> engine_;
  TrainOptions opts_;
  History hist_;
  LossValue last_;
  long step_ = 0;
  long recorded_step_ = -1;
  Status status_ = Status::Running;
  std::unique_ptr<Tracker<Scalar>> tracker_;
  std::optional<BulkValue> bulk_;
};

}  // namespace deeplinear
