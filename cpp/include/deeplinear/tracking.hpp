// Singular values and learning subspaces of every layer, recorded during training
// (MATH.md §2).
//
// Modes:
//  - Full:        an exact SVD (Eigen's BDCSVD) of every layer at every recorded step.
//  - Incremental: the top k singular triplets by block subspace iteration warm-started from
//                 the previous record, with Rayleigh–Ritz and a residual check
//                 ||W^T u_i - s_i v_i|| <= tol * s_1; a full SVD when the check still fails
//                 after max_iter iterations (counted in `fallbacks`).
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
// Checkpoints: state() / restore() read and write back everything that changes while recording
// (TrackerState), including the incremental warm starts and the random generator, so a resumed
// run records bit for bit what an uninterrupted one records.
#pragma once

#include "deeplinear/rng.hpp"
#include "deeplinear/types.hpp"

#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <limits>
#include <numeric>
#include <type_traits>

namespace deeplinear {

enum class TrackMode { None, Full, Incremental, Structured };

struct TrackOptions {
  TrackMode mode = TrackMode::None;
  long every = 1;
  long k = 0;              // 0: all singular values; else the top k and the bottom k (incremental: top k)
  double tol = 1e-10;      // incremental: residual tolerance relative to s_1
  int max_iter = 10;       // incremental: iterations before the fallback to a full SVD
  long verify_every = 0;   // structured: compare with a full SVD every this many records
};

using MatD = Eigen::MatrixXd;  // column-major double: small tracking matrices
using VecD = Eigen::VectorXd;

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
  std::vector<MatD> inc_u, inc_v;          // incremental warm starts per layer (0 x 0: none yet)
  Rng::State rng{};                        // incremental: the stream of random directions
};

/// Principal angles (radians, ascending) between the column spans of orthonormal A and B.
/// Small angles come from their sines (the singular values of B - A AᵀB), large ones from
/// their cosines (those of AᵀB): acos alone loses half the digits near 0 (acos(1 - 1e-16) is
/// 1.5e-8), so exactly invariant subspaces would show angles of 1e-8 instead of 1e-15.
inline VecD principal_angles(const MatD& a_in, const MatD& b_in) {
  const bool swap = a_in.cols() < b_in.cols();  // angles are symmetric: B the narrower one
  const MatD& a = swap ? b_in : a_in;
  const MatD& b = swap ? a_in : b_in;
  const MatD m = a.transpose() * b;
  const VecD c = Eigen::JacobiSVD<MatD>(m).singularValues();                  // descending
  const VecD s = Eigen::JacobiSVD<MatD>(MatD(b - a * m)).singularValues();   // descending
  const Index k = c.size();
  VecD ang(k);
  for (Index i = 0; i < k; ++i) {  // i-th smallest angle: i-th largest cosine, i-th smallest sine
    const double ci = std::min(1.0, std::max(0.0, c(i)));
    const double si = (s.size() == k) ? std::min(1.0, std::max(0.0, s(k - 1 - i))) : std::sqrt(std::max(0.0, 1.0 - ci * ci));
    ang(i) = (ci * ci >= 0.5) ? std::asin(si) : std::acos(ci);
  }
  return ang;
}

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
      if (opts.mode == TrackMode::Incremental) {
        require(opts.k <= full, "track_k", "larger than a layer's number of singular values");
        n = opts.k;
      } else {
        n = (opts.k == 0 || 2 * opts.k >= full) ? full : 2 * opts.k;
      }
      n_sv_ = std::max(n_sv_, n);
    }
    inc_u_.resize(L);
    inc_v_.resize(L);
  }

  bool due(long step) const { return opts_.mode != TrackMode::None && step % opts_.every == 0; }
  TrackMode mode() const { return opts_.mode; }
  Index n_sv() const { return n_sv_; }
  Index rank2() const { return rank2_; }

  /// Records step `step` from the current weights.
  void record(long step, const std::vector<Mat<Scalar>>& w) {
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
        case TrackMode::None: break;
      }
      if (verify) {
        MatD du, dv;
        const VecD exact = full_svd(w[l], false, du, dv);
        const Index n = std::min(exact.size(), s.size());
        const double scale = std::max(exact(0), std::numeric_limits<double>::min());
        for (Index i = 0; i < n; ++i) verify_err_ = std::max(verify_err_, std::abs(exact(i) - s(i)) / scale);
      }
      store_values(s, base_sv + l * n_sv_);
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
    if ((s.rng.words[0] | s.rng.words[1] | s.rng.words[2] | s.rng.words[3]) == 0)
      fail("random generator state is all zero");
    state_fields([&](const char*, auto member, auto field) { assign(this->*member, s.*field); });
  }

 private:
  /// Values in descending order, top k and bottom k when k is set (NaN padding up to n_sv).
  void store_values(const VecD& s, std::size_t at) {
    const Index n = s.size();
    if (opts_.mode == TrackMode::Incremental || opts_.k == 0 || 2 * opts_.k >= n) {
      for (Index i = 0; i < std::min<Index>(n, n_sv_); ++i) sv_[at + i] = s(i);
    } else {
      for (Index i = 0; i < opts_.k; ++i) {
        sv_[at + i] = s(i);
        sv_[at + opts_.k + i] = s(n - opts_.k + i);
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
    const auto idx = learning_indices(s);
    if (idx.empty()) return s;  // not identifiable: no angles for this record
    lu.resize(a.rows(), rank2_);
    lv.resize(a.cols(), rank2_);
    for (Index j = 0; j < rank2_; ++j) {
      lu.col(j) = svd.matrixU().col(idx[j]);
      lv.col(j) = svd.matrixV().col(idx[j]);
    }
    return s;
  }

  /// Indices of the 2r singular values farthest from the bulk (the median), by |s^2 - rho^2|;
  /// empty when that set is not identifiable: the 2r-th and (2r+1)-th distances tie to
  /// kIdentifyTol * s_1^2 (e.g. at an orthogonal init, where all singular values are equal, or
  /// exactly at a crossing), so that the chosen directions would be decided by round-off.
  std::vector<Index> learning_indices(const VecD& s) const {
    const Index n = s.size();
    std::vector<double> sorted(s.data(), s.data() + n);
    std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
    const double bulk = sorted[n / 2];
    std::vector<Index> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](Index i, Index j) {
      return std::abs(s(i) * s(i) - bulk * bulk) > std::abs(s(j) * s(j) - bulk * bulk);
    });
    if (n > rank2_) {
      const auto dist = [&](Index i) { return std::abs(s(i) * s(i) - bulk * bulk); };
      if (dist(idx[rank2_ - 1]) - dist(idx[rank2_]) <= kIdentifyTol * s(0) * s(0)) return {};
    }
    idx.resize(std::min(n, rank2_));
    return idx;
  }

  /// Top-k triplets by warm-started subspace iteration with Rayleigh–Ritz.
  VecD incremental(std::size_t l, const Mat<Scalar>& w, MatD& lu, MatD& lv) {
    return with_double(w, [&](const Mat<double>& a) { return incremental_impl(l, a, lu, lv); });
  }

  VecD incremental_impl(std::size_t l, const Mat<double>& a, MatD& lu, MatD& lv) {
    const Index k = opts_.k;
    const Index n = a.cols();
    MatD& v = inc_v_[l];
    MatD& u = inc_u_[l];
    if (v.cols() != k) return exact_top(a, k, u, v, lu, lv);  // first record: exact start
    // Warm start: the previous top-k right vectors plus p fresh random directions.  A residual
    // check alone would accept any exact invariant subspace (the bulk directions of a
    // structured layer are exact singular vectors): the random directions expose a singular
    // value that rose above the tracked ones, whose Ritz pair then fails the check.
    const Index p = std::min<Index>(std::max<Index>(2, k / 2), n - k);
    MatD b(n, k + p);
    b.leftCols(k) = v;
    for (Index j = k; j < k + p; ++j)
      for (Index i = 0; i < n; ++i) b(i, j) = rng_.normal();
    b = Eigen::HouseholderQR<MatD>(b).householderQ() * MatD::Identity(n, k + p);
    for (int it = 0; it < opts_.max_iter; ++it) {
      ++iterations_;
      const MatD z = a * b;  // m x (k+p)
      Eigen::JacobiSVD<MatD> rr(z, Eigen::ComputeThinU | Eigen::ComputeThinV);
      const VecD s = rr.singularValues();
      const MatD uu = rr.matrixU();
      const MatD vv = b * rr.matrixV();
      const MatD y = a.transpose() * uu;  // n x (k+p); equals vv diag(s) at convergence
      const double res = (y.leftCols(k) - vv.leftCols(k) * s.head(k).asDiagonal()).colwise().norm().maxCoeff();
      const double scale = std::max(s(0), std::numeric_limits<double>::min());
      if (res <= opts_.tol * scale) {
        max_residual_ = std::max(max_residual_, res / scale);
        u = uu.leftCols(k);
        v = vv.leftCols(k);
        set_learning(u, v, s, lu, lv);
        return s.head(k);
      }
      b = Eigen::HouseholderQR<MatD>(y).householderQ() * MatD::Identity(n, k + p);  // orth(A^T A b)
    }
    ++fallbacks_;
    return exact_top(a, k, u, v, lu, lv);
  }

  VecD exact_top(const Mat<double>& a, Index k, MatD& u, MatD& v, MatD& lu, MatD& lv) {
    Eigen::BDCSVD<MatD> svd(MatD(a), Eigen::ComputeThinU | Eigen::ComputeThinV);
    v = svd.matrixV().leftCols(k);
    u = svd.matrixU().leftCols(k);
    set_learning(u, v, svd.singularValues(), lu, lv);
    return svd.singularValues().head(k);
  }

  /// Incremental mode tracks by index: its top-2r subspace is the learning subspace while the
  /// learned values stay above the bulk (use "full" or "structured" across crossings).  `s`: the
  /// (Ritz) values known, descending; none when the 2r-th and (2r+1)-th tie (not identifiable).
  void set_learning(const MatD& u, const MatD& v, const VecD& s, MatD& lu, MatD& lv) const {
    if (rank2_ == 0 || u.cols() < rank2_) return;
    if (s.size() > rank2_ && s(rank2_ - 1) * s(rank2_ - 1) - s(rank2_) * s(rank2_) <= kIdentifyTol * s(0) * s(0))
      return;
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

  std::vector<Index> dims_;
  TrackOptions opts_;
  std::vector<MatD> ref_u_, ref_v_;
  std::vector<double> rho_;
  Index rank2_ = 0;
  Index n_sv_ = 0;
  std::vector<MatD> inc_u_, inc_v_;
  Rng rng_{0x5eed5eedULL};
  std::vector<long> steps_;
  std::vector<double> sv_, ang_right_, ang_left_, ang_align_;
  long fallbacks_ = 0;
  long iterations_ = 0;
  double max_residual_ = 0.0;
  double verify_err_ = 0.0;
};

}  // namespace deeplinear
