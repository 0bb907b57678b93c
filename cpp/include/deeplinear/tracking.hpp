// Singular values and learning subspaces of every layer, recorded during training
// (MATH.md §2).
//
// Modes:
//  - Full:        an exact SVD (Eigen's BDCSVD) of every layer at every recorded step.
//  - Incremental: the top k singular triplets by a warm-started block Krylov iteration (below);
//                 a record is accepted once its values are certified to tol * s_1 (and, when
//                 angles are recorded, the top-2r residuals ||W^T u_i - s_i v_i|| are <= tol * s_1),
//                 else a full SVD after max_iter block steps (counted in `fallbacks`); the first
//                 record too starts the iteration (from random directions), not a full SVD.
//  - Structured:  for factorization with orthogonal init under GD / momentum, every layer is
//                 U_l diag(W~_l, rho I) V_l^T exactly: the singular values are those of the
//                 2r x 2r block U_{l,1}^T W_l V_{l,1} plus |rho| (d - 2r times), rho(t) the
//                 trainer's bulk value (bulk.hpp), handed to every record.  Optionally verified
//                 against a full SVD.
//
// The learning subspace (for angles) is identified by subspace, not by sorted index: the 2r
// singular directions whose singular values are farthest from the bulk value (|s^2 - rho^2|
// largest, rho the median singular value), so it stays right when a learned singular value
// crosses the bulk.  Angles are principal angles (radians, ascending) between that subspace and
// a reference basis (the invariant basis at step 0), on the right (V) and left (U) side, and
// between U_l and V_{l+1} (alignment of adjacent layers).  They are NaN for a record where the
// learning subspace is not identifiable (the 2r-th and (2r+1)-th distances tie to 1e-10 s_1^2,
// e.g. at an orthogonal init, where all singular values are equal).
//
// Incremental mode runs BlockKrylovSvd (krylov.hpp: the iteration, its certificate and its
// cost) on every layer, with the warm starts, change sketches and random stream kept here (they
// are tracker state: checkpointed).
//
// Threads: a record's layers run one after the other, every product on the library's threads.
// A record's products are thin (d x d times 10-30 columns); the trainer records between the
// forward GEMMs and the backward ones, while the BLAS library's idle workers still spin (its
// thread time-out), so a threaded product starts at once.  Measured at d = 1000, L = 3, 2r = 20
// on 2 quiet cores, per record of a step tracked every step: structured 2.7 ms this way against
// 6.3 ms with the layers side by side on our own threads, one BLAS thread each (they competed
// with the spinning worker for the two cores).  On a loaded machine the side-by-side way was far
// faster (every hand-off of a thin threaded product can wait for a descheduled thread: at a
// load of ~10, structured 66-148 ms per record threaded, 23-29 ms side by side).  Where the
// library threads a product (d x d x 2r above ~2.6e5 multiply-adds), its last bits, and so a
// record's, may differ with the thread count (measured at d = 300: 2e-15 relative), as the
// step's own products do; small products run on one thread whatever the count.
//
// Checkpoints: state() / restore() read and write back everything that changes while recording
// (TrackerState), including the incremental warm starts and the random generator, so a resumed
// run records bit for bit what an uninterrupted one records.
#pragma once

#include "deeplinear/gemm.hpp"
#include "deeplinear/krylov.hpp"
#include "deeplinear/rng.hpp"
#include "deeplinear/subspace.hpp"
#include "deeplinear/types.hpp"

#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <limits>
#include <numeric>
#include <optional>
#include <type_traits>

namespace deeplinear {

enum class TrackMode { None, Full, Incremental, Structured, Compressed };

struct TrackOptions {
  TrackMode mode = TrackMode::None;
  long every = 1;
  long k = 0;              // 0: all singular values; else the top k and the bottom k (incremental: top k)
  double tol = 1e-10;      // incremental: certified error of the values, relative to s_1
  int max_iter = 10;       // incremental: block steps before the fallback to a full SVD
  long verify_every = 0;   // structured: compare with a full SVD every this many records
  bool top_only = false;   // k set: record the top k values only (always so for incremental)
  long bulk_count = 0;     // compressed: d - 2r, the multiplicity of |rho| in every wide layer
  double bulk_rho = 0.0;   // compressed: rho when the trainer carries none (the approximation)
};


/// Everything a Tracker changes while it records: with the dims, options and reference bases it
/// was built from, its complete state.  Tracker::state() reads it and
/// Tracker::restore() writes it back, so that a run resumed from a checkpoint records exactly
/// what the uninterrupted run records (incremental mode: the same warm starts, the same random
/// directions).
///
/// A Tracker member that changes while recording must be added here as a field, and as one
/// line in Tracker::state_fields (its name and the member it holds); state(), restore() and the
/// checkpoint bindings then carry it (the bindings convert by field type: vectors of long or
/// double, long, double, vectors of MatD, Rng::State).
struct TrackerState {
  std::vector<long> steps;                 // recorded steps
  std::vector<double> singular_values;     // records x layers x n_sv, flat (row-major)
  std::vector<double> angles_right;        // records x layers x 2r
  std::vector<double> angles_left;         // records x layers x 2r
  std::vector<double> angles_align;        // records x (layers - 1) x 2r
  long fallbacks = 0;
  long iterations = 0;
  double max_residual = 0.0;
  double verify_error = 0.0;
  std::vector<MatD> inc_u, inc_v;          // incremental warm starts per layer: the top k + p Ritz
                                           // vectors, left and right (0 x 0: none yet)
  std::vector<MatD> inc_sketch;            // incremental: W^T H (or W H) per layer at the last record
  Rng::State rng{};                        // incremental: the stream of random directions
};

template <class Scalar>
class Tracker {
 public:
  /// ref_u[l], ref_v[l]: reference learning bases of layer l+1 (d_l x 2r and d_{l-1} x 2r), or
  /// empty (no angles).
  Tracker(const std::vector<Index>& dims, const TrackOptions& opts, std::vector<MatD> ref_u,
          std::vector<MatD> ref_v)
      : dims_(dims), opts_(opts), ref_u_(std::move(ref_u)), ref_v_(std::move(ref_v)) {
    const std::size_t L = dims.size() - 1;
    require(opts.every >= 1, "track_every", "must be >= 1");
    require(opts.k >= 0, "track_k", "must be >= 0");
    require(ref_u_.empty() || (ref_u_.size() == L && ref_v_.size() == L), "basis", "needs one basis per layer");
    rank2_ = ref_v_.empty() ? 0 : ref_v_.front().cols();
    for (std::size_t l = 0; l < ref_v_.size(); ++l) {
      require(ref_v_[l].rows() == dims[l] && ref_u_[l].rows() == dims[l + 1], "basis",
              "layer " + std::to_string(l + 1) + ": basis rows do not match the layer's shape");
      require(ref_v_[l].cols() == rank2_ && ref_u_[l].cols() == rank2_, "basis", "all layers need 2r columns");
    }
    if (opts.mode == TrackMode::Compressed) {
      // the reference basis is the compressed network's own: the first 2r block coordinates
      require(ref_u_.empty(), "basis", "a compressed network is tracked against its own basis");
      require(opts.bulk_count >= 0, "bulk", "d - 2r must be >= 0");
      rank2_ = dims.front();
      const MatD ref = MatD::Identity(2 * rank2_, rank2_);
      ref_u_.assign(L, ref);
      ref_v_.assign(L, ref);
    }
    if (opts.mode == TrackMode::Structured) {
      require(rank2_ > 0, "basis", "structured tracking needs the invariant basis");
    }
    if (opts.mode == TrackMode::Incremental) {
      require(opts.k >= 1, "track_k", "incremental tracking needs k >= 1 (the top k triplets)");
      require(opts.tol > 0 && opts.max_iter >= 1, "track_tol", "must be > 0");
    }
    n_sv_ = 0;
    for (std::size_t l = 0; l < L; ++l) {
      const Index full = std::min(dims[l], dims[l + 1]);
      Index n;
      if (opts.mode == TrackMode::Compressed) {
        const Index wide = full + opts.bulk_count;
        n = (opts.k == 0 || (!opts.top_only && 2 * opts.k >= wide)) ? wide : opts.top_only ? std::min(opts.k, wide) : 2 * opts.k;
      } else if (opts.mode == TrackMode::Incremental) {
        require(opts.k <= full, "track_k", "larger than a layer's number of singular values");
        n = opts.k;
      } else {
        n = (opts.k == 0 || 2 * opts.k >= full) ? full : 2 * opts.k;
      }
      n_sv_ = std::max(n_sv_, n);
    }
    inc_u_.resize(L);
    inc_v_.resize(L);
    inc_sketch_.resize(L);
    inc_h_.resize(L);
    if (opts.mode == TrackMode::Incremental) {
      const BlockKrylovSvd solver = krylov();
      for (std::size_t l = 0; l < L; ++l) inc_h_[l] = solver.sketch_matrix(dims[l + 1], dims[l], kSketchSeed + l);
    }
  }

  bool due(long step) const { return opts_.mode != TrackMode::None && step % opts_.every == 0; }
  TrackMode mode() const { return opts_.mode; }
  Index n_sv() const { return n_sv_; }
  Index rank2() const { return rank2_; }

  /// Records step `step` from the current weights (compressed: the blocks, and rho when the
  /// trainer carries it, else opts.bulk_rho; structured: rho, the trainer's bulk value).
  void record(long step, const std::vector<Mat<Scalar>>& w, std::optional<double> rho = std::nullopt) {
    if (!steps_.empty() && steps_.back() == step) return;
    const std::size_t L = w.size();
    steps_.push_back(step);
    const std::size_t base_sv = sv_.size();
    sv_.resize(base_sv + L * n_sv_, std::numeric_limits<double>::quiet_NaN());
    const std::size_t base_a = ang_right_.size();
    ang_right_.resize(base_a + L * rank2_, std::numeric_limits<double>::quiet_NaN());
    ang_left_.resize(base_a + L * rank2_, std::numeric_limits<double>::quiet_NaN());
    const std::size_t base_al = ang_align_.size();
    ang_align_.resize(base_al + (L - 1) * rank2_, std::numeric_limits<double>::quiet_NaN());
    std::vector<MatD> lu(L), lv(L);  // learning subspaces of this record (when measured)
    const bool verify = opts_.mode == TrackMode::Structured && opts_.verify_every > 0 &&
                        (steps_.size() - 1) % opts_.verify_every == 0;
    std::vector<VecD> vals;  // incremental and structured: every layer's values at once
    if (opts_.mode == TrackMode::Incremental) vals = incremental(w, lu, lv);
    if (opts_.mode == TrackMode::Structured) {
      require(rho.has_value(), "rho", "structured tracking needs the trainer's bulk value");
      vals = structured(*rho, w);
    }
    for (std::size_t l = 0; l < L; ++l) {
      VecD s;
      switch (opts_.mode) {
        case TrackMode::Full: s = full_svd(w[l], rank2_ > 0, lu[l], lv[l]); break;
        case TrackMode::Incremental:
        case TrackMode::Structured: s = std::move(vals[l]); break;
        case TrackMode::Compressed: compressed(w[l], rho.value_or(opts_.bulk_rho), base_sv + l * n_sv_, lu[l], lv[l]); break;
        case TrackMode::None: break;
      }
      if (verify) {
        MatD du, dv;
        const VecD exact = full_svd(w[l], false, du, dv);
        const Index n = std::min(exact.size(), s.size());
        const double scale = std::max(exact(0), std::numeric_limits<double>::min());
        for (Index i = 0; i < n; ++i) verify_err_ = std::max(verify_err_, std::abs(exact(i) - s(i)) / scale);
      }
      if (opts_.mode != TrackMode::Compressed) store_values(s, base_sv + l * n_sv_);
      if (rank2_ > 0 && lv[l].size() > 0) {
        const VecD ar = principal_angles(ref_v_[l], lv[l]);
        const VecD al = principal_angles(ref_u_[l], lu[l]);
        for (Index i = 0; i < rank2_; ++i) {
          ang_right_[base_a + l * rank2_ + i] = ar(i);
          ang_left_[base_a + l * rank2_ + i] = al(i);
        }
      }
    }
    for (std::size_t l = 0; l + 1 < L && rank2_ > 0; ++l) {
      if (lu[l].size() == 0 || lv[l + 1].size() == 0) continue;
      const VecD a = principal_angles(lu[l], lv[l + 1]);
      for (Index i = 0; i < rank2_; ++i) ang_align_[base_al + l * rank2_ + i] = a(i);
    }
  }

  const std::vector<long>& steps() const { return steps_; }
  const std::vector<double>& singular_values() const { return sv_; }
  const std::vector<double>& angles_right() const { return ang_right_; }
  const std::vector<double>& angles_left() const { return ang_left_; }
  const std::vector<double>& angles_align() const { return ang_align_; }
  long fallbacks() const { return fallbacks_; }
  long iterations() const { return iterations_; }
  double max_residual() const { return max_residual_; }
  double verify_error() const { return verify_err_; }

  /// f(name, member, field) for every member that changes while recording: its name (the
  /// checkpoint key), a pointer to the Tracker member and one to its TrackerState field.  The
  /// one list that state(), restore() and the bindings go through.
  template <class F>
  static void state_fields(F&& f) {
    f("steps", &Tracker::steps_, &TrackerState::steps);
    f("singular_values", &Tracker::sv_, &TrackerState::singular_values);
    f("angles_right", &Tracker::ang_right_, &TrackerState::angles_right);
    f("angles_left", &Tracker::ang_left_, &TrackerState::angles_left);
    f("angles_align", &Tracker::ang_align_, &TrackerState::angles_align);
    f("fallbacks", &Tracker::fallbacks_, &TrackerState::fallbacks);
    f("iterations", &Tracker::iterations_, &TrackerState::iterations);
    f("max_residual", &Tracker::max_residual_, &TrackerState::max_residual);
    f("verify_error", &Tracker::verify_err_, &TrackerState::verify_error);
    f("inc_u", &Tracker::inc_u_, &TrackerState::inc_u);
    f("inc_v", &Tracker::inc_v_, &TrackerState::inc_v);
    f("inc_sketch", &Tracker::inc_sketch_, &TrackerState::inc_sketch);
    f("rng", &Tracker::rng_, &TrackerState::rng);
  }

  /// The state that changes while recording (a copy; see TrackerState).
  TrackerState state() const {
    TrackerState s;
    state_fields([&](const char*, auto member, auto field) { assign(s.*field, this->*member); });
    return s;
  }

  /// Writes back a state read by state() from a tracker built with the same dims, options and
  /// bases.  Shapes are checked first (std::invalid_argument naming "checkpoint");
  /// nothing changes when a check fails.
  void restore(const TrackerState& s) {
    const auto fail = [](const std::string& what) { require(false, "checkpoint", "tracking state: " + what); };
    const std::size_t L = dims_.size() - 1;
    const std::size_t n = s.steps.size();
    const auto r2 = static_cast<std::size_t>(rank2_);
    for (std::size_t i = 1; i < n; ++i)
      if (s.steps[i] <= s.steps[i - 1]) fail("recorded steps are not increasing");
    if (!s.steps.empty() && s.steps.front() < 0) fail("negative recorded step");
    if (s.singular_values.size() != n * L * static_cast<std::size_t>(n_sv_))
      fail("singular values do not match " + std::to_string(n) + " records x " + std::to_string(L) +
           " layers x " + std::to_string(n_sv_) + " values");
    if (s.angles_right.size() != n * L * r2 || s.angles_left.size() != n * L * r2 ||
        s.angles_align.size() != n * (L - 1) * r2)
      fail("angles do not match " + std::to_string(n) + " records x " + std::to_string(L) + " layers x " +
           std::to_string(r2) + " (2r)");
    if (s.fallbacks < 0 || s.iterations < 0) fail("negative counters");
    if (s.inc_u.size() != L || s.inc_v.size() != L) fail("needs one warm start per layer");
    for (std::size_t l = 0; l < L; ++l) {
      const MatD& u = s.inc_u[l];
      const MatD& v = s.inc_v[l];
      const bool none = u.size() == 0 && v.size() == 0;
      const bool fits = opts_.mode == TrackMode::Incremental && u.rows() == dims_[l + 1] &&
                        v.rows() == dims_[l] && u.cols() == v.cols() &&
                        u.cols() <= std::min(dims_[l], dims_[l + 1]);
      if (!none && !fits) fail("layer " + std::to_string(l + 1) + ": warm-start shapes do not match the layer");
    }
    if (s.inc_sketch.size() != L) fail("needs one change sketch per layer");
    for (std::size_t l = 0; l < L; ++l) {
      const MatD& sk = s.inc_sketch[l];
      if (sk.size() != 0 && (opts_.mode != TrackMode::Incremental || sk.rows() != std::min(dims_[l], dims_[l + 1]) ||
                             sk.cols() != krylov().sketch_columns()))
        fail("layer " + std::to_string(l + 1) + ": change-sketch shape does not match the layer");
    }
    if ((s.rng.words[0] | s.rng.words[1] | s.rng.words[2] | s.rng.words[3]) == 0)
      fail("random generator state is all zero");
    state_fields([&](const char*, auto member, auto field) { assign(this->*member, s.*field); });
  }

 private:
  /// Values in descending order, top k and bottom k when k is set (NaN padding up to n_sv).
  void store_values(const VecD& s, std::size_t at) {
    store_values(s.size(), [&](Index i) { return s(i); }, at);
  }
  /// The same for n values given by value(i), i = 0..n-1 descending.
  template <class F>
  void store_values(Index n, F&& value, std::size_t at) {
    if (opts_.mode == TrackMode::Incremental || opts_.top_only || opts_.k == 0 || 2 * opts_.k >= n) {
      for (Index i = 0; i < std::min<Index>(n, n_sv_); ++i) sv_[at + i] = value(i);
    } else {
      for (Index i = 0; i < opts_.k; ++i) {
        sv_[at + i] = value(i);
        sv_[at + opts_.k + i] = value(n - opts_.k + i);
      }
    }
  }

  /// The layer in double precision: the layer itself for float64 (no copy), a copy for float32.
  template <class F>
  static auto with_double(const Mat<Scalar>& w, F&& f) {
    if constexpr (std::is_same_v<Scalar, double>) {
      return f(w);
    } else {
      const Mat<double> a = w.template cast<double>();
      return f(a);
    }
  }

  /// Exact SVD; with `subspace`, also the learning subspace (2r directions farthest from the bulk).
  VecD full_svd(const Mat<Scalar>& w, bool subspace, MatD& lu, MatD& lv) const {
    const MatD a = w.template cast<double>();  // BDCSVD works on a column-major copy
    if (!subspace) {
      Eigen::BDCSVD<MatD> svd(a);
      return svd.singularValues();
    }
    Eigen::BDCSVD<MatD> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const VecD s = svd.singularValues();
    const auto taken = learning_counts(s, {}, rank2_, kIdentifyTol);
    if (taken.empty()) return s;  // not identifiable: no angles for this record
    lu.resize(a.rows(), rank2_);
    lv.resize(a.cols(), rank2_);
    for (Index i = 0, j = 0; i < s.size(); ++i) {
      if (taken[static_cast<std::size_t>(i)] == 0) continue;
      lu.col(j) = svd.matrixU().col(i);
      lv.col(j++) = svd.matrixV().col(i);
    }
    return s;
  }

  /// Compressed network (the layers are the 2r x 2r blocks W~_l of wide layers
  /// U_l diag(W~_l, rho I) V_l^T): the wide singular values, svd(W~_l) and |rho| repeated
  /// d - 2r times, stored from a (value, count) list without forming the d values; the learning
  /// subspace by the same rule as a wide layer's (learning_counts with multiplicities).  Angles
  /// are measured in the coordinates of the blocks and the bulk: the reference basis is the
  /// compressed network's own (the first 2r of 4r coordinates), a chosen bulk direction is one
  /// of the 2r coordinates after them, orthogonal to it (the bulk directions are the same for
  /// adjacent layers: U_{l,2} = V_{l+1,2}).
  void compressed(const Mat<Scalar>& w, double rho, std::size_t at, MatD& lu, MatD& lv) {
    const MatD a = w.template cast<double>();
    Eigen::JacobiSVD<MatD> svd(a, rank2_ > 0 ? Eigen::ComputeFullU | Eigen::ComputeFullV : 0);
    const Index r2 = a.rows();
    VecD vals(r2 + 1);
    vals.head(r2) = svd.singularValues();
    vals(r2) = std::abs(rho);
    const Index nb = opts_.bulk_count;
    // descending order of the d values: the block's above |rho|, nb copies of |rho|, the rest
    Index above = 0;
    while (above < r2 && vals(above) > vals(r2)) ++above;
    const Index n = r2 + nb;
    store_values(n, [&](Index i) { return i < above ? vals(i) : i < above + nb ? vals(r2) : vals(i - nb); }, at);
    if (rank2_ == 0) return;
    std::vector<Index> count(static_cast<std::size_t>(r2 + 1), 1);
    count.back() = nb;
    const auto taken = learning_counts(vals, count, rank2_, kIdentifyTol);
    if (taken.empty()) return;
    lu = MatD::Zero(2 * r2, rank2_);
    lv = MatD::Zero(2 * r2, rank2_);
    Index j = 0;
    for (Index i = 0; i < r2; ++i) {
      if (taken[static_cast<std::size_t>(i)] == 0) continue;
      lu.col(j).head(r2) = svd.matrixU().col(i);
      lv.col(j++).head(r2) = svd.matrixV().col(i);
    }
    for (Index b = 0; b < taken.back(); ++b, ++j) lu(r2 + b, j) = lv(r2 + b, j) = 1.0;
  }

  /// Top-k triplets of every layer by the warm-started block Krylov iteration (krylov.hpp),
  /// the layers one after the other (one workspace alive at a time: see the header).
  std::vector<VecD> incremental(const std::vector<Mat<Scalar>>& w, std::vector<MatD>& lu, std::vector<MatD>& lv) {
    const BlockKrylovSvd solver = krylov();
    KrylovCounters counters{iterations_, fallbacks_, max_residual_};
    const Index k = opts_.k;
    std::vector<VecD> vals(w.size());
    for (std::size_t l = 0; l < w.size(); ++l) {
      const VecD s = with_double(w[l], [&](const Mat<double>& a) {
        return solver.top(a, inc_u_[l], inc_v_[l], inc_sketch_[l], rng_, inc_h_[l], counters);
      });
      set_learning(MatD(inc_u_[l].leftCols(k)), MatD(inc_v_[l].leftCols(k)), s, lu[l], lv[l]);
      vals[l] = s.head(k);
    }
    return vals;
  }

  BlockKrylovSvd krylov() const {
    KrylovOptions o;
    o.k = opts_.k;
    o.tol = opts_.tol;
    o.max_iter = opts_.max_iter;
    o.vectors = rank2_;
    o.identify_tol = kIdentifyTol;
    return BlockKrylovSvd(o);
  }

  /// Incremental mode tracks by index: its top-2r subspace is the learning subspace while the
  /// learned values stay above the bulk (use "full" or "structured" across crossings).  `s`: the
  /// (Ritz) values known, descending; none when the 2r-th and (2r+1)-th tie (not identifiable).
  void set_learning(const MatD& u, const MatD& v, const VecD& s, MatD& lu, MatD& lv) const {
    if (rank2_ == 0 || u.cols() < rank2_ || !top_identifiable(s, rank2_, kIdentifyTol)) return;
    lu = u.leftCols(rank2_);
    lv = v.leftCols(rank2_);
  }

  /// Every layer's svd(U1^T W V1) and |rho| repeated min(m, n) - 2r times, descending.  The
  /// blocks come from W V1 (V1 row-major, the layer read as stored): one thin GEMM per layer on
  /// the library's threads (see the header), then U1^T (W V1) and the 2r x 2r SVD.
  std::vector<VecD> structured(double rho, const std::vector<Mat<Scalar>>& w) {
    const std::size_t L = w.size();
    if (ref_v_rows_.size() != L) {  // V1 row-major, the right operand of the thin GEMMs
      ref_v_rows_.resize(L);
      for (std::size_t l = 0; l < L; ++l) ref_v_rows_[l] = ref_v_[l];
    }
    std::vector<VecD> vals(L);
    Mat<double> z;
    for (std::size_t l = 0; l < L; ++l) {
      z.resize(w[l].rows(), rank2_);
      with_double(w[l], [&](const Mat<double>& a) { gemm(z, a, false, ref_v_rows_[l], false); });
      const MatD block = ref_u_[l].transpose() * z;
      const VecD b = Eigen::JacobiSVD<MatD>(block).singularValues();
      const Index n = std::min(w[l].rows(), w[l].cols());
      const double bulk = std::abs(rho);
      Index above = 0;  // descending: the block's values above |rho|, the n - 2r copies, the rest
      while (above < rank2_ && b(above) > bulk) ++above;
      VecD s(n);
      s.head(above) = b.head(above);
      s.segment(above, n - rank2_).setConstant(bulk);
      s.tail(rank2_ - above) = b.tail(rank2_ - above);
      vals[l] = std::move(s);
    }
    return vals;
  }

  template <class A, class B>
  static void assign(A& dst, const B& src) { dst = src; }
  static void assign(Rng::State& dst, const Rng& src) { dst = src.state(); }
  static void assign(Rng& dst, const Rng::State& src) { dst.set_state(src); }

  // Relative gap (in s^2 / s_1^2) below which the learning subspace counts as not identifiable:
  // round-off alone then moves the chosen directions by up to about 2 eps / kIdentifyTol, eps
  // that of the weights' precision: 1e-10 in double, 1e4 eps = 1.2e-3 in float (whose
  // rounding spreads an exactly degenerate bulk by ~1e-7 relative: with 1e-10 an orthogonal
  // init's directions, all values equal, were chosen by round-off, angles up to 1.5 rad).
  static constexpr double kIdentifyTol =
      std::max(1e-10, 1e4 * static_cast<double>(std::numeric_limits<Scalar>::epsilon()));
  static constexpr std::uint64_t kSketchSeed = 0x5ce7c4ed5eedULL;  // + layer index: the fixed H

  std::vector<Index> dims_;
  TrackOptions opts_;
  std::vector<MatD> ref_u_, ref_v_;
  Index rank2_ = 0;
  Index n_sv_ = 0;
  std::vector<MatD> inc_u_, inc_v_;
  std::vector<MatD> inc_sketch_;
  std::vector<MatD> inc_h_;  // incremental: every layer's fixed H (made from its seed here; not state)
  std::vector<Mat<double>> ref_v_rows_;  // structured: ref_v_ row-major
  Rng rng_{0x5eed5eedULL};
  std::vector<long> steps_;
  std::vector<double> sv_, ang_right_, ang_left_, ang_align_;
  long fallbacks_ = 0;
  long iterations_ = 0;
  double max_residual_ = 0.0;
  double verify_err_ = 0.0;
};

}  // namespace deeplinear
