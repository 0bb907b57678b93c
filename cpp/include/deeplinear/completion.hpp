// Compressed matrix completion on the observed entries (MATH.md §4).
//
// Model: W^ = U W~_L ... W~_1 V^T, U (d_out x k), V (d_in x k), W~_l (k x k), k = 2r.  Loss
//   f = (c/2) sum_Omega (W^_ij - phi_ij)^2 + (lambda/2) (||U||^2 + ||V||^2 + sum_l ||W~_l||^2)
// with the wide network's c (1 or 1/(d_out d_in)).  With A = W~_{L:1}, the residual matrix S of
// e = c (W^ - phi) on Omega:
//   grad_U = (S V) A^T,  grad_V = (S^T U) A,  grad_W~_l = W~_{L:l+1}^T (U^T S V) W~_{l-1:1}^T
// (+ lambda times the factor).  U and V are updated with the optimizer's step scaled by alpha
// (the discrepant learning rate, OptimizerConfig's step scale: the update, not the gradient),
// the W~_l at the full step.  The step loop follows Trainer (trainer.hpp): the loss at step t is
// evaluated (and recorded every record_every steps, with the test loss on the held-out
// entries), then the factors are updated; divergence (non-finite loss) and tol stop the run.
#pragma once

#include "deeplinear/gemm.hpp"
#include "deeplinear/objective.hpp"
#include "deeplinear/optimizer.hpp"
#include "deeplinear/sparse.hpp"
#include "deeplinear/trainer.hpp"

#include <memory>
#include <optional>

namespace deeplinear {

/// The factors of a compressed completion model (float64).  Optimizer "layers" 1 .. L + 2 are
/// V, W~_1, ..., W~_L, U (factor(0) = V, factor(L + 1) = U).
struct CompletionFactors {
  std::vector<Mat<double>> f;  // V, W~_1 .. W~_L, U

  CompletionFactors(Mat<double> u, std::vector<Mat<double>> ws, Mat<double> v) {
    require(!ws.empty(), "layers", "need at least one middle factor");
    const Index k = ws[0].rows();
    require(u.cols() == k && v.cols() == k, "U", "U and V must have 2r columns, as the middle factors");
    for (const auto& w : ws) require(w.rows() == k && w.cols() == k, "layers", "middle factors must be 2r x 2r");
    require(u.allFinite() && v.allFinite(), "U", "U and V must be finite");
    f.push_back(std::move(v));
    for (auto& w : ws) f.push_back(std::move(w));
    f.push_back(std::move(u));
  }
  std::size_t depth() const { return f.size() - 2; }
  Index rank2() const { return f[1].rows(); }
  Mat<double>& U() { return f.back(); }
  Mat<double>& V() { return f.front(); }
  const Mat<double>& U() const { return f.back(); }
  const Mat<double>& V() const { return f.front(); }
  Mat<double>& layer(std::size_t l) { return f[l]; }  // 1-based W~_l
  const Mat<double>& layer(std::size_t l) const { return f[l]; }
};

struct CompletionOptions {
  double c = 1.0;            // the wide network's reduction constant
  double outer_scale = 0.01; // alpha: step factor of U and V
  int threads = 1;           // at most this many (see threads_for)
  Index column_block = 0;    // column block width of the pass (0: column_block_width's default)
};

class CompletionTrainer {
 public:
  using M = Mat<double>;

  CompletionTrainer(CompletionFactors& fac, SparseEntries train, std::optional<SparseEntries> test,
                    const OptimizerConfig& cfg, const CompletionOptions& copts, const TrainOptions& opts)
      : fac_(fac), train_(train), test_(test), opt_(cfg, fac.f), copts_(copts), opts_(opts),
        pool_(threads_for(train.nnz(), copts.threads)) {
    require(opts.record_every >= 1, "record_every", "must be >= 1");
    require(std::isfinite(copts.outer_scale) && copts.outer_scale >= 0, "outer_lr_scale", "must be finite and >= 0");
    require(std::isfinite(copts.c) && copts.c > 0, "c", "must be finite and > 0");
    require(train.rows == fac.U().rows() && train.cols == fac.V().rows(), "problem",
            "the observed matrix's shape does not match U and V");
    if (test) require(test->rows == train.rows && test->cols == train.cols, "test", "shape differs from the observed entries'");
    opt_.set_step_scale(1, copts.outer_scale);
    opt_.set_step_scale(fac.f.size(), copts.outer_scale);
    const Index k = fac.rank2(), d_out = train.rows, d_in = train.cols;
    const int T = pool_.size();
    bounds_ = balanced_rows(train_, T);
    require(copts.column_block >= 0, "column_block", "must be >= 0");
    cb_ = column_blocks(train_, copts.column_block > 0 ? copts.column_block : column_block_width(d_in, k));
    if (test_) test_bounds_ = balanced_rows(*test_, T);
    b_.resize(d_out, k);
    gu_.resize(d_out, k);
    gb_.resize(d_out, k);
    gv_.resize(d_in, k);
    gv_extra_store_.resize(static_cast<std::size_t>(T > 1 ? T - 1 : 0));
    for (auto& g : gv_extra_store_) {
      g.resize(d_in, k);
      gv_extra_.push_back(g.data());
    }
    m_store_.assign(static_cast<std::size_t>(T), M(k, k));
    for (auto& m : m_store_) m_parts_.push_back(m.data());
    sse_parts_.assign(static_cast<std::size_t>(T), 0.0);
    const std::size_t L = fac.depth();
    prefix_.assign(L + 1, M(k, k));  // prefix_[l] = W~_{l:1}, l >= 1 (prefix_[0] unused)
    sweep_.assign(2, M(k, k));
    m_.resize(k, k);
    grads_.assign(L, M(k, k));
    // up to 2^16 records up front (a huge step budget with tol met at once must not reserve
    // memory for every step); the history grows beyond
    constexpr long kReserveCap = 1L << 16;
    const std::size_t n = static_cast<std::size_t>(
        std::min(kReserveCap, std::max(0L, opts.expected_steps) / opts.record_every + 2));
    hist_.steps.reserve(n);
    hist_.train_loss.reserve(n);
    if (test_) hist_.test_loss.reserve(n);
  }
  CompletionTrainer(const CompletionTrainer&) = delete;
  CompletionTrainer& operator=(const CompletionTrainer&) = delete;

  Status run(long n_steps) {
    if (status_ != Status::Running) return status_;
    for (long s = 0; s < n_steps; ++s) {
      evaluate();
      if (check_point(false) != Status::Running) return status_;
      update();
      ++step_;
    }
    return status_;
  }

  Status finish() {
    if (status_ == Status::Running) {
      evaluate();
      check_point(true);
      if (status_ == Status::Running && !(all_factors_finite())) status_ = Status::Diverged;
    }
    return status_;
  }

  /// Restores the progress of an earlier run (restore_progress); factors and optimizer state
  /// are restored separately.
  void restore(long step, History h) { restore_progress(step, std::move(h), step_, hist_, recorded_step_, status_); }

  long step() const { return step_; }
  std::size_t depth() const { return fac_.f.size(); }  // optimizer layers: V, W~_1..W~_L, U
  Status status() const { return status_; }
  const History& history() const { return hist_; }
  LossValue last_loss() const { return last_; }
  Optimizer<double>& optimizer() { return opt_; }
  int threads() const { return pool_.size(); }
  Index column_block() const { return cb_.width; }

  /// The test loss (c/2) sum_test (W^ - phi)^2 at the current factors (NaN without test entries).
  double test_loss_now() {
    if (!test_) return std::numeric_limits<double>::quiet_NaN();
    compute_a();
    gemm(b_, fac_.U(), false, prefix_[fac_.depth()], false);
    return 0.5 * copts_.c * error_pass(pool_, *test_, test_bounds_, fac_.rank2(), b_.data(), fac_.V().data(), sse_parts_);
  }

 private:
  void compute_a() {
    const std::size_t L = fac_.depth();
    prefix_[1] = fac_.layer(1);
    for (std::size_t l = 2; l <= L; ++l) gemm(prefix_[l], fac_.layer(l), false, prefix_[l - 1], false);
  }

  /// Loss at the current factors and (in the workspace) every gradient.
  void evaluate() {
    const std::size_t L = fac_.depth();
    const Index k = fac_.rank2();
    compute_a();
    const double sse = fused_pass(pool_, train_, cb_, bounds_, k, fac_.U().data(), prefix_[L].data(),
                                  fac_.V().data(), copts_.c, b_.data(), gb_.data(), gu_.data(), gv_.data(), gv_extra_,
                                  m_.data(), m_parts_, sse_parts_);
    last_ = LossValue{};
    last_.train = 0.5 * copts_.c * sse;
    const double lam = opt_.config().weight_decay;
    if (lam != 0.0) {
      double sq = 0.0;
      for (const auto& w : fac_.f) sq += squared_norm(w);
      last_.train += 0.5 * lam * sq;
    }
    // middle gradients: S_L = M; grad_l = S_l W~_{l-1:1}^T; S_{l-1} = W~_l^T S_l
    const M* s = &m_;
    int cur = 0;
    for (std::size_t l = L; l >= 2; --l) {
      gemm(grads_[l - 1], *s, false, prefix_[l - 1], true);
      gemm(sweep_[cur], fac_.layer(l), true, *s, false);
      s = &sweep_[cur];
      cur ^= 1;
    }
    grads_[0] = *s;
  }

  void update() {
    const std::size_t L = fac_.depth();
    const double lam = opt_.config().weight_decay;
    opt_.begin_step();
    if (lam != 0.0) {
      gv_ += lam * fac_.V();
      gu_ += lam * fac_.U();
      for (std::size_t l = 1; l <= L; ++l) grads_[l - 1] += lam * fac_.layer(l);
    }
    opt_.update(1, fac_.V(), gv_);
    for (std::size_t l = 1; l <= L; ++l) opt_.update(l + 1, fac_.layer(l), grads_[l - 1]);
    opt_.update(L + 2, fac_.U(), gu_);
  }

  bool all_factors_finite() const {
    for (const auto& w : fac_.f)
      if (!w.allFinite()) return false;
    return true;
  }

  Status check_point(bool force_record) {
    const bool record_step = step_ % opts_.record_every == 0 || force_record;
    if (!std::isfinite(last_.train)) return status_ = Status::Diverged;
    const bool stop = opts_.tol >= 0 && last_.train <= opts_.tol;
    if ((record_step || stop) && recorded_step_ != step_) {
      if (test_) {
        // B = U A is in b_ from the fused pass
        last_.test = 0.5 * copts_.c *
                     error_pass(pool_, *test_, test_bounds_, fac_.rank2(), b_.data(), fac_.V().data(), sse_parts_);
        if (!std::isfinite(last_.test)) return status_ = Status::Diverged;
      }
      hist_.steps.push_back(step_);
      hist_.train_loss.push_back(last_.train);
      if (test_) hist_.test_loss.push_back(last_.test);
      recorded_step_ = step_;
    }
    if (stop) status_ = Status::Converged;
    return status_;
  }

  CompletionFactors& fac_;
  SparseEntries train_;
  std::optional<SparseEntries> test_;
  Optimizer<double> opt_;
  CompletionOptions copts_;
  TrainOptions opts_;
  ThreadPool pool_;
  std::vector<Index> bounds_, test_bounds_;
  ColumnBlocks cb_;
  M b_, gb_, gu_, gv_, m_;
  std::vector<M> gv_extra_store_, m_store_, prefix_, sweep_, grads_;
  std::vector<double*> gv_extra_, m_parts_;
  std::vector<double> sse_parts_;
  History hist_;
  LossValue last_;
  long step_ = 0;
  long recorded_step_ = -1;
  Status status_ = Status::Running;
};

}  // namespace deeplinear
