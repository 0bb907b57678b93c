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
//                 2r x 2r block U_{l,1}^T W_l V_{l,1} plus |rho| (d - 2r times), rho(t) from
//                 its scalar recursion.  Optionally verified against a full SVD.
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
// Incremental mode.  The iteration runs on the smaller side of W (W^T W on right vectors, say).
// Start block: the previous record's top k Ritz vectors, the next p = max(2, k/4) ones and
// q = max(2, k/8) fresh random directions; at the first record (no warm start) k + p + q random
// directions.  A block step multiplies the newest block X by W and W^T (Z = W X, then W^T Z: two
// products, `iterations` counts block steps) and adds X to the basis Q (block Lanczos, full
// reorthogonalization; a thick restart keeps the leading Ritz vectors when Q reaches 8 blocks).
// Rayleigh–Ritz on W itself, svd(W Q), gives the Ritz triplets (theta_j, u_j, v_j) with
// W v_j = theta_j u_j and residuals r_j = ||W^T u_j - theta_j v_j|| (from W^T W Q, kept).  It is
// computed from the Gram matrix G = (W Q)^T (W Q) (updated block by block; a small symmetric
// eigenproblem, theta_j^2 its eigenvalues, u_j = W Q c_j / theta_j), whose error in theta_j is
// about eps s_1^2 / theta_j: so only while every theta_j >= 1e-3 theta_1 (error <= 1e-13 s_1);
// else from a QR factorization of W Q and the SVD of its triangular factor (error eps s_1).
// The next block holds the residual directions of the leading Ritz pairs not converged yet;
// once the values are certified, only those of the pairs after the k-th (the safeguard below).
// The change sketch (W^T - W_prev^T) H, for a fixed random H with q columns, needs no product
// of its own: H rides along as q more columns of the first W^T product (W^T H is kept from
// record to record) and the change joins the second block.  So every product of a record is
// one GEMM with all the columns that multiply W (or W^T) at that point.  With a flat rest of the
// spectrum (orthogonal init, the bulk at rho(t) of a factorization) the first step's residual
// directions span the learning directions exactly, so two steps give every value to round-off
// however close the learned values still are to the bulk (plain subspace iteration converged at
// the rate of that gap).
//
// First record.  No full SVD: the iteration starts from random directions.  At an orthogonal
// init all singular values are equal, any block is invariant (zero residuals), and the first
// block step certifies the values; from a generic init it converges in a few steps (or falls back
// like any record).  The full SVD (exact_top: Eigen's BDCSVD of a column-major copy of the layer,
// ~12 d^2 at its peak for d x d) is only the fallback.  Memory of a record: the basis Q, W^T W Q
// and W Q (d x nq each, grown as the basis grows: nq = 39 in the benchmark below) and the Ritz
// vectors: a fraction of one d^2.
//
// The certificate.  The theta_j are Ritz values of the Jordan–Wielandt matrix [[0, W], [W^T, 0]]
// for the vectors [u_j; v_j] / sqrt 2, whose residuals are r_j / sqrt 2, and interlace:
// theta_j <= s_j.  For a run J = [a, c] of consecutive Ritz values, with e = ||R_J||_F / sqrt 2
// and eta the gap between theta_J and the rest of the spectrum, every s_j, j in J, is within
// 2 e^2 / (eta + sqrt(eta^2 + 4 e^2)) <= min(e, e^2 / eta) of theta_j (R.-C. Li and C.-K. Li,
// LAA 395 (2005); Mathias, SIMAX 19 (1998)): Weyl's first-order bound e without a gap, quadratic
// in the residual with one.  The gap is bounded below from the Ritz values: above the run by
// theta_{a-1} - theta_a (since s_{a-1} >= theta_{a-1}), below it by theta_c - theta_{c+1} - e minus
// the bound of theta_{c+1} (computed first, from the bottom up).  Each value takes the least
// bound over the runs that hold it, so a cluster is certified as a whole (its values to its
// residual although its vectors are not determined), and a value separated by g needs a
// residual of only about sqrt(2 tol g s_1) (1e-5 s_1 for g = s_1 / 2, tol = 1e-10), not tol s_1:
// the recorded values are within tol * s_1 of the exact ones, the vectors within
// r / gap (max_residual: the largest r_j / s_1 of the records accepted).  What no residual can
// show is a singular value the basis misses altogether (the bound assumes theta_{c+1} stands for
// s_{c+1}), e.g. one that rose from below while the tracked vectors stayed exact: three kinds
// of start directions are there for that.  A singular value moves by at most ||W - W_prev||
// (Weyl), so one that enters the top k from further down moved by at least its distance to the
// k-th, along directions where W changed: the change sketch samples the range of that change
// (a rank-one change is caught exactly).  The random directions cover what the sketch misses.
// A record takes at least two block steps once a previous sketch exists (the change joins the
// second), and three while Ritz pairs after the k-th still have residuals above tol (their
// residual directions expand the random directions and the sketch), so that a missed value
// surfaces as a Ritz value; it stops earlier only when all of them have converged (the basis
// then holds exact singular triplets).  The extra Ritz vectors follow the values just below the
// k-th.
//
// Cost: in the d = 1000 factorization benchmark (k = 20, angles recorded) a record takes two
// block steps per layer, four products: W times 27 columns (20 + 5 Ritz vectors, 2 random), W^T
// times 29 (those and the 2 of H), then W and W^T times 12 (10 residual directions, 2 of the
// change sketch): 80 columns, about 3 ms of a ~120 ms step per layer.  Where the k-th value lies
// inside a dense part of the spectrum (spacings of 1e-5 s_1, as in the bulk of a d = 1000
// completion or Adam run), no run of Ritz values has a usable gap, the residuals themselves
// would have to reach tol * s_1, and such records fall back to the full SVD after max_iter
// block steps.
//
// Checkpoints: state() / restore() read and write back everything that changes while recording
// (TrackerState), including the incremental warm starts and the random generator, so a resumed
// run records bit for bit what an uninterrupted one records.
#pragma once

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


/// Everything a Tracker changes while it records: with the dims, options, reference bases and
/// rho(t) it was built from, its complete state.  Tracker::state() reads it and
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
  /// empty (no angles).  rho: rho(t) for t = 0..steps (structured mode only).
  Tracker(const std::vector<Index>& dims, const TrackOptions& opts, std::vector<MatD> ref_u,
          std::vector<MatD> ref_v, std::vector<double> rho)
      : dims_(dims), opts_(opts), ref_u_(std::move(ref_u)), ref_v_(std::move(ref_v)), rho_(std::move(rho)) {
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
      require(!rho_.empty(), "rho", "structured tracking needs rho(t)");
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
  }

  bool due(long step) const { return opts_.mode != TrackMode::None && step % opts_.every == 0; }
  TrackMode mode() const { return opts_.mode; }
  Index n_sv() const { return n_sv_; }
  Index rank2() const { return rank2_; }

  /// Records step `step` from the current weights (compressed: the blocks, and rho when the
  /// trainer carries it, else opts.bulk_rho).
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
    for (std::size_t l = 0; l < L; ++l) {
      VecD s;
      switch (opts_.mode) {
        case TrackMode::Full: s = full_svd(w[l], rank2_ > 0, lu[l], lv[l]); break;
        case TrackMode::Incremental: s = incremental(l, w[l], lu[l], lv[l]); break;
        case TrackMode::Structured: s = structured(l, step, w[l]); break;
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

  /// Writes back a state read by state() from a tracker built with the same dims, options,
  /// bases and rho(t).  Shapes are checked first (std::invalid_argument naming "checkpoint");
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
                             sk.cols() != sketch_columns()))
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

  /// Top-k triplets by warm-started block Krylov iteration with Rayleigh–Ritz (see the header).
  VecD incremental(std::size_t l, const Mat<Scalar>& w, MatD& lu, MatD& lv) {
    return with_double(w, [&](const Mat<double>& a) { return incremental_impl(l, a, lu, lv); });
  }

  VecD incremental_impl(std::size_t l, const Mat<double>& a, MatD& lu, MatD& lv) {
    const Index k = opts_.k;
    // Iterate on the smaller side: right vectors (A^T A) when n <= m, left ones (A A^T) else.
    const bool left = a.cols() > a.rows();
    const Index p = left ? a.rows() : a.cols();   // dimension of the iteration space
    const Index mo = left ? a.cols() : a.rows();  // the other side, >= p
    MatD& u = inc_u_[l];
    MatD& v = inc_v_[l];
    MatD& warm = left ? u : v;
    const auto op = [&](const MatD& x) -> MatD { return left ? MatD(a.transpose() * x) : MatD(a * x); };
    const auto op_t = [&](const MatD& x) -> MatD { return left ? MatD(a * x) : MatD(a.transpose() * x); };
    const Index q0 = sketch_columns();
    const Index px = extra_columns(p);  // extra Ritz vectors kept
    // Start block: the previous top k and next px Ritz vectors and q0 fresh random directions;
    // without a warm start (first record, or restored without one), k + px + q0 random ones.
    const bool cold = warm.cols() < k;
    const Index nw = cold ? 0 : warm.cols();
    const Index nr = std::min<Index>(p - nw, cold ? k + px + q0 : q0);
    MatD rnd(p, nr);
    for (Index j = 0; j < nr; ++j)
      for (Index i = 0; i < p; ++i) rnd(i, j) = rng_.normal();
    MatD blk;
    {
      const MatD w0 = cold ? MatD(p, 0) : warm;  // orthonormal Ritz vectors
      const MatD ext = extend_basis(w0, std::move(rnd), 0.0);
      blk.resize(p, nw + ext.cols());
      blk << w0, ext;
    }
    const Index bs = blk.cols();
    // Basis Q, Y = op^T op Q, Z = op Q and the Gram matrix G = Z^T Z = Q^T op^T op Q.
    // Basis size before a thick restart; the buffers grow up to it as the basis does (a record
    // of the steady state uses two blocks: no d x cap buffers).
    const Index cap = std::min<Index>(p, kMaxBlocks * (bs + q0));
    const Index cap0 = std::min<Index>(cap, 2 * bs + q0);
    MatD qb(p, cap0), yb(p, cap0), zb(mo, cap0), g(cap0, cap0);
    const auto reserve = [&](Index n) {
      if (n <= qb.cols()) return;
      const Index m = std::min<Index>(cap, std::max<Index>(n, 2 * qb.cols()));
      qb.conservativeResize(Eigen::NoChange, m);
      yb.conservativeResize(Eigen::NoChange, m);
      zb.conservativeResize(Eigen::NoChange, m);
      g.conservativeResize(m, m);
    };
    Index nq = 0;
    MatD change;  // the change sketch, normalized, until it joins the basis
    bool sketched = false;
    const double tol = opts_.tol;
    for (int it = 1; it <= opts_.max_iter; ++it) {
      ++iterations_;
      const Index c = blk.cols();
      reserve(nq + c);
      const MatD z = op(blk);
      if (!sketched) {  // the sketch product op^T H rides along in the first op^T product
        MatD zh(mo, c + q0);
        zh.leftCols(c) = z;
        Rng gh(kSketchSeed + l);  // this layer's fixed random H
        for (Index j = c; j < c + q0; ++j)
          for (Index i = 0; i < mo; ++i) zh(i, j) = gh.normal();
        const MatD y = op_t(zh);
        yb.middleCols(nq, c) = y.leftCols(c);
        MatD sketch = y.rightCols(q0);
        if (inc_sketch_[l].rows() == p && inc_sketch_[l].cols() == q0) {
          change = sketch - inc_sketch_[l];
          for (Index j = 0; j < q0; ++j) {  // relative to the sketch: round-off is ~1e-16 of 1
            const double nj = sketch.col(j).norm();
            if (nj > 0) change.col(j) /= nj;
          }
        }
        inc_sketch_[l] = std::move(sketch);
        sketched = true;
      } else {
        yb.middleCols(nq, c) = op_t(z);
      }
      qb.middleCols(nq, c) = blk;
      zb.middleCols(nq, c) = z;
      g.block(0, nq, nq + c, c).noalias() = zb.leftCols(nq + c).transpose() * z;
      g.block(nq, 0, c, nq) = g.block(0, nq, nq, c).transpose();
      nq += c;
      // Rayleigh–Ritz on W itself: op Q = Ul diag(theta) C^T, Ritz vectors v_j = Q c_j and
      // u_j = op v_j / theta_j, with op^T op Q c_j = Y c_j.
      const Ritz rr = rayleigh_ritz(zb.leftCols(nq), g.topLeftCorner(nq, nq));
      const VecD& th = rr.th;
      const MatD vr = qb.leftCols(nq) * rr.c;
      const MatD hv = yb.leftCols(nq) * rr.c;
      const MatD rm = hv - vr * th.cwiseAbs2().asDiagonal();  // theta_j (op^T u_j - theta_j v_j)
      const double scale = th(0) > 0 ? th(0) : 1.0;
      VecD res(nq);  // residuals relative to s_1: ||op^T u_j - theta_j v_j|| / theta_1
      for (Index j = 0; j < nq; ++j) {
        const double rn = rm.col(j).norm();
        res(j) = rn == 0 ? 0.0 : th(j) > 0 ? std::min(rn / th(j) / scale, kHuge) : kHuge;
      }
      const bool complete = nq >= p;  // the basis spans the whole space: exact
      const VecD ub = value_bounds(th / scale, res, complete);
      bool ok = ub.head(k).maxCoeff() <= tol;
      if (ok && rank2_ > 0 && rank2_ <= k && nq > rank2_ && identifiable(th) &&
          res.head(rank2_).maxCoeff() > tol)
        ok = false;  // angles recorded: the top-2r vectors need residuals <= tol * s_1
      // Next block: residual directions of the leading Ritz pairs not converged yet; once the
      // values are certified, those of the pairs after the k-th only (the safeguard); and after
      // the first step, the change sketch.
      const Index lo = ok ? k : 0;
      const Index most = ok ? bs - k : bs;
      const double small = ok ? tol : 1e-2 * tol;
      std::vector<Index> sel;
      for (Index j = lo; j < nq && static_cast<Index>(sel.size()) < most; ++j)
        if (res(j) > small) sel.push_back(j);
      bool done = ok && (it >= std::min(kMinIter, opts_.max_iter) || complete || sel.empty());
      MatD nb(p, 0);
      if (!complete && it < opts_.max_iter && (!done || change.cols() > 0)) {
        if (!done && !sel.empty()) {
          MatD d(p, static_cast<Index>(sel.size()));
          for (std::size_t i = 0; i < sel.size(); ++i) d.col(static_cast<Index>(i)) = rm.col(sel[i]);
          nb = extend_basis(qb.leftCols(nq), std::move(d), kNoise * scale * scale);
        }
        if (change.cols() > 0) {
          MatD qa(p, nq + nb.cols());
          qa << qb.leftCols(nq), nb;
          const MatD cb = extend_basis(qa, std::move(change), kChangeNoise);
          change.resize(p, 0);
          MatD t(p, nb.cols() + cb.cols());
          t << nb, cb;
          nb = std::move(t);
        }
        if (nb.cols() > 0) done = false;  // the change sketch (or more) joins the basis first
      }
      if (done) {
        const Index keep = std::min<Index>(k + px, nq);
        warm = vr.leftCols(keep);
        (left ? v : u) = rr.left(zb.leftCols(nq), keep);
        max_residual_ = std::max(max_residual_, res.head(k).maxCoeff());
        set_learning(MatD(u.leftCols(k)), MatD(v.leftCols(k)), th, lu, lv);
        return th.head(k);
      }
      if (nb.cols() == 0) break;
      if (nq + nb.cols() > cap) {  // thick restart: keep the leading Ritz vectors
        const Index keep = std::min<Index>(nq, cap - nb.cols());
        const MatD ck = rr.c.leftCols(keep);
        const MatD zk = zb.leftCols(nq) * ck;
        const MatD gk = ck.transpose() * (g.topLeftCorner(nq, nq) * ck);
        qb.leftCols(keep) = vr.leftCols(keep);
        yb.leftCols(keep) = hv.leftCols(keep);
        zb.leftCols(keep) = zk;
        g.topLeftCorner(keep, keep) = gk;
        nq = keep;
      }
      blk = std::move(nb);
    }
    ++fallbacks_;
    return exact_top(a, k, k + px, u, v, lu, lv);
  }

  /// Ritz values (descending) and vectors of W on a basis Q: th, C (Ritz vectors Q C), and the
  /// left vectors op Q C / theta (left()).
  struct Ritz {
    VecD th;
    MatD c;
    MatD ul;  // exact path: the left vectors (mo x nq); empty on the Gram path
    MatD left(const Eigen::Ref<const MatD>& z, Index keep) const {
      if (ul.size() > 0) return ul.leftCols(keep);
      return z * (c.leftCols(keep) * th.head(keep).cwiseInverse().asDiagonal());
    }
  };

  /// Rayleigh–Ritz on W for the orthonormal basis Q, from Z = op Q and G = Z^T Z.  Gram path:
  /// the eigenvectors of G (a symmetric nq x nq eigenproblem, no product with the tall Z),
  /// theta_j^2 its eigenvalues; the error of theta_j is about eps s_1^2 / theta_j, so it is taken
  /// only when every theta_j >= kGramTol * theta_1 (error <= 1e-13 s_1).  Else the exact path: a
  /// QR factorization of Z and the SVD of its triangular factor (theta to eps s_1).
  static Ritz rayleigh_ritz(const Eigen::Ref<const MatD>& z, const Eigen::Ref<const MatD>& g) {
    const Index nq = g.rows();
    Ritz rr;
    {
      const Eigen::SelfAdjointEigenSolver<MatD> es(g);  // ascending
      const VecD& ev = es.eigenvalues();
      if (ev(nq - 1) > 0 && ev(0) >= kGramTol * kGramTol * ev(nq - 1)) {
        rr.th.resize(nq);
        rr.c.resize(nq, nq);
        for (Index j = 0; j < nq; ++j) {
          rr.th(j) = std::sqrt(ev(nq - 1 - j));
          rr.c.col(j) = es.eigenvectors().col(nq - 1 - j);
        }
        return rr;
      }
    }
    const Eigen::HouseholderQR<MatD> qr(z);
    const MatD r = qr.matrixQR().topRows(nq).template triangularView<Eigen::Upper>();
    const Eigen::BDCSVD<MatD> svd(r, Eigen::ComputeFullU | Eigen::ComputeFullV);
    rr.th = svd.singularValues();
    rr.c = svd.matrixV();
    MatD pad = MatD::Zero(z.rows(), nq);
    pad.topRows(nq) = svd.matrixU();
    rr.ul = qr.householderQ() * pad;
    return rr;
  }

  /// Ritz vectors kept beyond the top k (they follow the values just below the k-th), for an
  /// iteration space of dimension p.
  Index extra_columns(Index p) const { return std::min<Index>(std::max<Index>(2, opts_.k / 4), p - opts_.k); }

  /// Columns of the change sketch (and fresh random directions per record).
  Index sketch_columns() const { return std::max<Index>(2, opts_.k / 8); }

  /// Orthonormal basis of the part of span(d) orthogonal to the orthonormal columns of q, without
  /// the directions that are round-off: below 1e-10 of the largest, or below `floor` in norm.
  static MatD extend_basis(const Eigen::Ref<const MatD>& q, MatD d, double floor) {
    const Index n = d.rows();
    if (d.cols() == 0) return MatD(n, 0);
    for (int pass = 0; pass < 2; ++pass) d.noalias() -= q * (q.transpose() * d);
    const Eigen::ColPivHouseholderQR<MatD> cq(d);
    const VecD piv = cq.matrixR().diagonal().cwiseAbs();
    Index r = 0;
    while (r < piv.size() && piv(r) > std::max(kRankTol * piv(0), floor)) ++r;
    if (r == 0) return MatD(n, 0);
    MatD b = cq.householderQ() * MatD::Identity(n, r);
    b.noalias() -= q * (q.transpose() * b);
    return Eigen::HouseholderQR<MatD>(b).householderQ() * MatD::Identity(n, r);
  }

  /// ub(j) >= sigma_j - theta_j (>= 0: Ritz values interlace) for the Ritz values th (descending,
  /// relative to s_1) with residuals res(j) = ||A^T u_j - theta_j v_j|| / s_1, as in the header:
  /// for every run [a, c] of consecutive Ritz values, the bound 2e^2 / (eta + sqrt(eta^2 + 4e^2))
  /// (e = ||R_[a,c]||_F / sqrt 2, eta = the run's gap to the rest of the spectrum, <= 0: the
  /// bound is e), applied to the values in the run; ub(j) is the least over the runs holding j.
  /// complete: th are all the singular values (no spectrum below the last one but -sigma and 0).
  static VecD value_bounds(const VecD& th, const VecD& res, bool complete) {
    const Index nr = th.size();
    const double inf = std::numeric_limits<double>::infinity();
    VecD pre(nr + 1);  // prefix sums of res^2 / 2
    pre(0) = 0.0;
    for (Index j = 0; j < nr; ++j) pre(j + 1) = pre(j) + 0.5 * res(j) * res(j);
    VecD ub = VecD::Constant(nr, inf);
    for (Index c = nr - 1; c >= 0; --c) {  // runs ending at c use ub(c + 1), final by then
      // gap below the run: sigma_{c+1} <= theta_{c+1} + ub(c+1); -sigma and 0 are <= 0
      const double below = c + 1 < nr ? std::min(th(c), th(c) - th(c + 1) - ub(c + 1))
                                      : (complete ? th(c) : -inf);
      double run = inf;
      for (Index a = 0; a <= c; ++a) {  // run = least bound of [a', c] over a' <= a
        const double e = std::sqrt(std::max(0.0, pre(c + 1) - pre(a)));
        double eta = below - e;
        if (a > 0) eta = std::min(eta, th(a - 1) - th(a));  // sigma_{a-1} >= theta_{a-1}
        const double b = eta > 0 ? 2.0 * e * e / (eta + std::sqrt(eta * eta + 4.0 * e * e)) : e;
        run = std::min(run, b);
        ub(a) = std::min(ub(a), run);
      }
    }
    return ub;
  }

  VecD exact_top(const Mat<double>& a, Index k, Index keep, MatD& u, MatD& v, MatD& lu, MatD& lv) {
    Eigen::BDCSVD<MatD> svd(MatD(a), Eigen::ComputeThinU | Eigen::ComputeThinV);
    v = svd.matrixV().leftCols(keep);
    u = svd.matrixU().leftCols(keep);
    set_learning(MatD(u.leftCols(k)), MatD(v.leftCols(k)), svd.singularValues(), lu, lv);
    return svd.singularValues().head(k);
  }

  /// Whether the 2r-th and (2r+1)-th of the (Ritz) values s differ by more than kIdentifyTol.
  bool identifiable(const VecD& s) const {
    return s.size() <= rank2_ ||
           s(rank2_ - 1) * s(rank2_ - 1) - s(rank2_) * s(rank2_) > kIdentifyTol * s(0) * s(0);
  }

  /// Incremental mode tracks by index: its top-2r subspace is the learning subspace while the
  /// learned values stay above the bulk (use "full" or "structured" across crossings).  `s`: the
  /// (Ritz) values known, descending; none when the 2r-th and (2r+1)-th tie (not identifiable).
  void set_learning(const MatD& u, const MatD& v, const VecD& s, MatD& lu, MatD& lv) const {
    if (rank2_ == 0 || u.cols() < rank2_ || !identifiable(s)) return;
    lu = u.leftCols(rank2_);
    lv = v.leftCols(rank2_);
  }

  /// svd(U1^T W V1) and |rho| repeated min(m, n) - 2r times, descending.
  VecD structured(std::size_t l, long step, const Mat<Scalar>& w) const {
    require(static_cast<std::size_t>(step) < rho_.size(), "rho", "shorter than the run");
    const MatD block = with_double(w, [&](const Mat<double>& a) -> MatD { return ref_u_[l].transpose() * (a * ref_v_[l]); });
    Eigen::JacobiSVD<MatD> svd(block);
    const Index n = std::min(w.rows(), w.cols());
    VecD s(n);
    s.head(rank2_) = svd.singularValues();
    s.tail(n - rank2_).setConstant(std::abs(rho_[step]));
    std::sort(s.data(), s.data() + n, std::greater<double>());
    return s;
  }

  template <class A, class B>
  static void assign(A& dst, const B& src) { dst = src; }
  static void assign(Rng::State& dst, const Rng& src) { dst = src.state(); }
  static void assign(Rng& dst, const Rng::State& src) { dst.set_state(src); }

  // Relative gap (in s^2 / s_1^2) below which the learning subspace counts as not identifiable:
  // round-off alone then moves the chosen directions by up to about 2 eps / kIdentifyTol.
  static constexpr double kIdentifyTol = 1e-10;
  // Incremental mode: block steps per record while Ritz pairs after the k-th have not converged
  // (the random directions and the sketch expanded, the safeguard against a missed singular
  // value), basis size in blocks before a thick restart,
  // round-off thresholds of a new block (relative to its largest direction, and to s_1^2), and
  // the residual standing for "unknown" (a Ritz value of 0 with a nonzero residual).
  static constexpr int kMinIter = 3;
  static constexpr Index kMaxBlocks = 8;
  static constexpr double kRankTol = 1e-10;
  static constexpr double kNoise = 1e-14;
  static constexpr double kChangeNoise = 1e-12;  // change sketch relative to the sketch: round-off
  static constexpr double kGramTol = 1e-3;       // Rayleigh–Ritz by the Gram matrix above this theta / theta_1
  static constexpr double kHuge = 1e100;
  static constexpr std::uint64_t kSketchSeed = 0x5ce7c4ed5eedULL;  // + layer index: the fixed H

  std::vector<Index> dims_;
  TrackOptions opts_;
  std::vector<MatD> ref_u_, ref_v_;
  std::vector<double> rho_;
  Index rank2_ = 0;
  Index n_sv_ = 0;
  std::vector<MatD> inc_u_, inc_v_;
  std::vector<MatD> inc_sketch_;
  Rng rng_{0x5eed5eedULL};
  std::vector<long> steps_;
  std::vector<double> sv_, ang_right_, ang_left_, ang_align_;
  long fallbacks_ = 0;
  long iterations_ = 0;
  double max_residual_ = 0.0;
  double verify_err_ = 0.0;
};

}  // namespace deeplinear
