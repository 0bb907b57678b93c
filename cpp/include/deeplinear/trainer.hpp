// The training loop: many steps inside C++, losses recorded every `record_every` steps.
//
// Step t evaluates the loss at the current weights (the loss "after t steps"), records it when
// t is a multiple of record_every, stops on a non-finite loss or weights (Diverged) or when the
// loss is <= tol (Converged), and otherwise does one backward sweep with in-place updates.
// run(n) does at most n updates and may be called repeatedly (the Python layer runs chunks of
// steps between progress-bar updates); finish() records the loss at the final weights.
//
// Model kinds as small policies.  The trainer steps one Network<Scalar> through one Objective;
// what kind of model that is lies in how the two are set up, not in another loop:
//  - a wide network: its own weights and the problem's data;
//  - a compressed network (MATH.md §3): the 2r x 2r blocks as the network, the wide problem
//    seen through the fixed outer factors (Objective::set_outer_maps, or the reduced target
//    Phi~ = U_{L,1}^T Phi V_{1,1}) with the wide c, the bulk value rho(t)
//    (set_bulk: BulkValue, bulk.hpp) and the constant part of the wide loss the blocks do not
//    carry (TrainOptions::loss_offset); the tracker then records the wide singular values from
//    the blocks (TrackMode::Compressed).
// A new kind adds a policy of this sort (an objective view, state that advances with every
// update), not a branch of run().
//
// State that checkpoints whole: the step, the history, the network's weights, the optimizer's
// buffers and count, the bulk value's State (rho and heavy ball's trace) and the tracker's
// TrackerState are everything that changes while training; restoring all of them resumes a run
// bit for bit (restore(), restore_bulk(), Optimizer accessors, Tracker::restore()).
#pragma once

#include "deeplinear/bulk.hpp"
#include "deeplinear/network.hpp"
#include "deeplinear/objective.hpp"
#include "deeplinear/optimizer.hpp"
#include "deeplinear/tracking.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

namespace deeplinear {

struct TrainOptions {
  long record_every = 1;
  double tol = -1.0;       // stop when loss <= tol; a negative value disables it
  long expected_steps = 0; // to size the history up front (up to 2^16 records; grown beyond)
  // Added to every training loss, before recording and the tol test: the constant part of a
  // wide network's loss that a compressed network's blocks do not carry (MATH.md §3).
  double loss_offset = 0.0;
};

struct History {
  std::vector<long> steps;
  std::vector<double> train_loss;
  std::vector<double> test_loss;
};

/// The progress of an earlier run (from a checkpoint) written into a training loop's counters
/// (Trainer, CompletionTrainer): the step counter and the history; the last recorded step is
/// the history's, and the loop runs again.
inline void restore_progress(long step, History h, long& step_out, History& hist_out, long& recorded_step_out,
                             Status& status_out) {
  require(step >= 0, "step", "must be >= 0");
  step_out = step;
  hist_out = std::move(h);
  recorded_step_out = hist_out.steps.empty() ? -1 : hist_out.steps.back();
  status_out = Status::Running;
}

template <class Scalar>
class Trainer {
 public:
  Trainer(Network<Scalar>& net, Objective<Scalar> obj, const OptimizerConfig& cfg,
          const TrainOptions& opts)
      : net_(net),
        obj_(std::move(obj)),
        opt_(cfg, std::as_const(net).weights()),
        engine_(net_, obj_, cfg.weight_decay),
        opts_(opts) {
    require(opts.record_every >= 1, "record_every", "must be >= 1");
    reserve_history();
  }
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Makes this trainer a fresh one for the next training call on the same network and
  /// objective: optimizer state, step, history, status, tracker and bulk value as after the
  /// constructor, with `cfg` and `opts`.  What is kept: the workspace (prefix, sweep and
  /// optimizer buffers, no allocation) and the engine's forward pass of the current weights
  /// while they are unchanged (Engine::evaluate), so that a call's first loss is the previous
  /// call's last one, not a second forward pass.  The run is the one a new trainer would do.
  void reset(const OptimizerConfig& cfg, const TrainOptions& opts) {
    require(opts.record_every >= 1, "record_every", "must be >= 1");
    opt_.reset(cfg, std::as_const(net_).weights());
    engine_.set_weight_decay(cfg.weight_decay);
    opts_ = opts;
    hist_ = History{};
    reserve_history();
    last_ = LossValue{};
    step_ = 0;
    recorded_step_ = -1;
    status_ = Status::Running;
    tracker_.reset();
    bulk_.reset();
  }

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
  void restore(long step, History h) { restore_progress(step, std::move(h), step_, hist_, recorded_step_, status_); }

  long step() const { return step_; }
  std::size_t depth() const { return net_.depth(); }
  Status status() const { return status_; }
  const History& history() const { return hist_; }
  LossValue last_loss() const { return last_; }
  Optimizer<Scalar>& optimizer() { return opt_; }

  /// Carries the bulk value rho(t) from rho (its value now), advanced with every update (GD /
  /// momentum), with the objective's c: of a compressed network, `count` = d - 2r bulk
  /// directions whose loss terms are added to every recorded loss (exact compression); of a
  /// wide network tracked "structured", count = 0 (no loss terms: the weights carry them).
  /// The tracker's records receive it.  Before the first step.
  void set_bulk(double rho, double count) {
    require(step_ == 0, "bulk", "must be set before the first step");
    require(std::isfinite(rho) && std::isfinite(count) && count >= 0, "bulk", "rho and count must be finite");
    const OptimizerConfig& cfg = opt_.config();
    require(cfg.kind == OptKind::GD, "bulk", "is carried exactly only by GD (with or without momentum)");
    bulk_.emplace(rho, count, net_.depth(), obj_.c(), cfg.lr, cfg.weight_decay, cfg.momentum, cfg.nesterov);
  }
  bool has_bulk() const { return bulk_.has_value(); }
  /// rho after step() updates (NaN without a bulk value).
  double bulk_rho() const { return bulk_ ? bulk_->rho() : std::numeric_limits<double>::quiet_NaN(); }
  /// The bulk value's complete state (rho and heavy ball's trace), for checkpoints.
  BulkValue::State bulk_state() const {
    require(bulk_.has_value(), "bulk", "this run carries no bulk value");
    return bulk_->state();
  }
  void restore_bulk(const BulkValue::State& s) {
    require(bulk_.has_value(), "checkpoint", "the bulk value of a compressed run needs set_bulk first");
    bulk_->set_state(s);
  }

  /// Records singular values / subspaces at every `track_every`-th step (and the last one).
  void set_tracker(std::unique_ptr<Tracker<Scalar>> tracker) { tracker_ = std::move(tracker); }
  const Tracker<Scalar>* tracker() const { return tracker_.get(); }
  Tracker<Scalar>* tracker() { return tracker_.get(); }  // restoring its state from a checkpoint

 private:
  /// The records expected, up to a cap: a large step budget that a tol ends early must not
  /// allocate its whole history up front; beyond the cap the vectors grow as records come.
  void reserve_history() {
    constexpr long kReserveCap = 1L << 16;
    const std::size_t n = static_cast<std::size_t>(
        std::min(kReserveCap, std::max(0L, opts_.expected_steps) / opts_.record_every + 2));
    hist_.steps.reserve(n);
    hist_.train_loss.reserve(n);
    if (obj_.has_test_loss()) hist_.test_loss.reserve(n);
  }

  /// Loss at the current weights, recording and stopping rules.
  Status check_point(bool force_record = false) {
    // Without weight decay the weight norms are only computed at the end of the run (an
    // explicit finiteness check of the weights): a non-finite weight makes the output, hence the
    // loss, non-finite anyway (IEEE: inf * 0 and anything * nan are nan, inf * x is inf).
    const bool record_step = step_ % opts_.record_every == 0 || force_record;
    last_ = engine_.evaluate(net_, /*weight_norms=*/force_record);
    last_.train += opts_.loss_offset;
    if (bulk_ && bulk_->count() > 0) last_.train += bulk_->loss_term();
    const bool finite = std::isfinite(last_.train) && (!obj_.has_test_loss() || std::isfinite(last_.test));
    if (!finite) return status_ = Status::Diverged;
    const bool stop = opts_.tol >= 0 && last_.train <= opts_.tol;
    if ((record_step || stop) && recorded_step_ != step_) {
      hist_.steps.push_back(step_);
      hist_.train_loss.push_back(last_.train);
      if (obj_.has_test_loss()) hist_.test_loss.push_back(last_.test);
      recorded_step_ = step_;
    }
    if (tracker_ && (tracker_->due(step_) || force_record || stop)) tracker_->record(step_, std::as_const(net_).weights(), bulk_ ? std::optional<double>(bulk_->rho()) : std::nullopt);
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
