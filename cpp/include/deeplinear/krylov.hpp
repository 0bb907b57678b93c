// Top singular triplets of a matrix by a warm-started block Krylov iteration with Rayleigh–Ritz
// and a certificate of the values: the solver of incremental tracking (tracking.hpp), one call
// per layer and record.
//
// The iteration runs on the smaller side of W (W^T W on right vectors, say).
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
// change sketch): 80 columns.  Measured inside a training step (2 cores, a plain step 150-190
// ms): ~4.7 ms per layer for the four products (thin_product, gemm.hpp: each streams the 8 MB
// layer from memory; two columns alone cost ~0.75 ms a layer, so the second step's two passes
// cost nearly as much as the first's) and ~1.2 ms for the rest (bases, Rayleigh-Ritz,
// certificate); a record of three layers 17-19 ms, 1.10-1.12 x a plain step.  Carrying the
// last residual directions into the next start block (so that the first step converges the
// learning directions and the second carries only the change sketch) was estimated from the
// products' measured times and dropped: the wider first step costs more than the narrower second
// one saves.  Where the k-th value lies
// inside a dense part of the spectrum (spacings of 1e-5 s_1, as in the bulk of a d = 1000
// completion or Adam run), no run of Ritz values has a usable gap, the residuals themselves
// would have to reach tol * s_1, and such records fall back to the full SVD after max_iter
// block steps.
#pragma once

#include "deeplinear/gemm.hpp"
#include "deeplinear/rng.hpp"
#include "deeplinear/subspace.hpp"
#include "deeplinear/types.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace deeplinear {

struct KrylovOptions {
  Index k = 1;                  // the top k triplets
  double tol = 1e-10;           // certified error of the values, relative to s_1
  int max_iter = 10;            // block steps before the fallback to a full SVD (below kMinIter,
                                // a record whose safeguard needs those steps falls back)
  Index vectors = 0;            // the top `vectors` need residuals <= tol * s_1 as well (their
                                // directions are used: angles), when they are identifiable
  double identify_tol = 1e-10;  // ... by top_identifiable(values, vectors, identify_tol)
};

/// What the solver counts over its calls (a tracker's checkpointed counters).
struct KrylovCounters {
  long& iterations;      // block steps
  long& fallbacks;       // calls ended by the full SVD
  double& max_residual;  // the largest r_j / s_1 of the top k of a call accepted
};

class BlockKrylovSvd {
 public:
  explicit BlockKrylovSvd(const KrylovOptions& o) : o_(o) {}

  const KrylovOptions& options() const { return o_; }

  /// Ritz vectors kept beyond the top k (they follow the values just below the k-th), for an
  /// iteration space of dimension p.
  Index extra_columns(Index p) const { return std::min<Index>(std::max<Index>(2, o_.k / 4), p - o_.k); }

  /// Columns of the change sketch (and fresh random directions per record).
  Index sketch_columns() const { return std::max<Index>(2, o_.k / 8); }

  /// The fixed random H of the change sketch for an m x n matrix (standard normal, drawn column
  /// by column from `seed`): made once per matrix by the caller, which hands it to every top().
  MatD sketch_matrix(Index m, Index n, std::uint64_t seed) const {
    const Index mo = n > m ? n : m;  // the side the iteration does not run on (see top())
    MatD h(mo, sketch_columns());
    Rng gh(seed);
    for (Index j = 0; j < h.cols(); ++j)
      for (Index i = 0; i < mo; ++i) h(i, j) = gh.normal();
    return h;
  }

  /// The top k singular triplets of `a`: returns the Ritz values known, descending, of which
  /// the first k are certified to tol * s_1 (or, after the fallback, all singular values); u
  /// and v (in: the previous call's, or empty; out: the top k + extra_columns() left and right
  /// Ritz vectors) are the warm start, `sketch_kept` the change sketch A^T H (or A H) of the previous
  /// call, `rng` the stream of random directions, `h` this matrix's fixed H (sketch_matrix()).
  VecD top(const Mat<double>& a, MatD& u, MatD& v, MatD& sketch_kept, Rng& rng, const MatD& h,
           KrylovCounters& counters) const {
    const Index k = o_.k;
    // Iterate on the smaller side: right vectors (A^T A) when n <= m, left ones (A A^T) else.
    const bool left = a.cols() > a.rows();
    const Index p = left ? a.rows() : a.cols();   // dimension of the iteration space
    const Index mo = left ? a.cols() : a.rows();  // the other side, >= p
    MatD& warm = left ? u : v;
    const auto op = [&](const MatD& x) -> MatD { return thin_product(a, left, x); };
    const auto op_t = [&](const MatD& x) -> MatD { return thin_product(a, !left, x); };
    const Index q0 = sketch_columns();
    const Index px = extra_columns(p);  // extra Ritz vectors kept
    // Start block: the previous top k and next px Ritz vectors and q0 fresh random directions;
    // without a warm start (first record, or restored without one), k + px + q0 random ones.
    if (warm.cols() >= k && !orthonormalize_in_order(warm)) warm.resize(p, 0);  // not finite: cold
    const bool cold = warm.cols() < k;
    const Index nw = cold ? 0 : warm.cols();
    const Index nr = std::min<Index>(p - nw, cold ? k + px + q0 : q0);
    MatD rnd(p, nr);
    for (Index j = 0; j < nr; ++j)
      for (Index i = 0; i < p; ++i) rnd(i, j) = rng.normal();
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
    const double tol = o_.tol;
    for (int it = 1; it <= o_.max_iter; ++it) {
      ++counters.iterations;
      const Index c = blk.cols();
      reserve(nq + c);
      const MatD z = op(blk);
      if (!sketched) {  // the sketch product op^T H rides along in the first op^T product
        require(h.rows() == mo && h.cols() == q0, "sketch", "H does not match the matrix");
        MatD zh(mo, c + q0);
        zh << z, h;
        const MatD y = op_t(zh);
        yb.middleCols(nq, c) = y.leftCols(c);
        MatD sketch = y.rightCols(q0);
        if (sketch_kept.rows() == p && sketch_kept.cols() == q0) {
          change = sketch - sketch_kept;
          for (Index j = 0; j < q0; ++j) {  // relative to the sketch: round-off is ~1e-16 of 1
            const double nj = sketch.col(j).norm();
            if (nj > 0) change.col(j) /= nj;
          }
        }
        sketch_kept = std::move(sketch);
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
      const Index nv = o_.vectors;
      if (ok && nv > 0 && nv <= k && nq > nv && top_identifiable(th, nv, o_.identify_tol) &&
          res.head(nv).maxCoeff() > tol)
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
      // The safeguard's kMinIter steps are not cut short by a smaller max_iter: such a record
      // ends in the fallback (exact) instead of being accepted without them.
      bool done = ok && (it >= kMinIter || complete || sel.empty());
      MatD nb(p, 0);
      if (!complete && it < o_.max_iter && (!done || change.cols() > 0)) {
        if (!done && !sel.empty()) {
          MatD d(p, static_cast<Index>(sel.size()));
          for (std::size_t i = 0; i < sel.size(); ++i) d.col(static_cast<Index>(i)) = rm.col(sel[i]);
          nb = extend_basis(qb.leftCols(nq), std::move(d), kNoise * scale * scale);
        }
        if (change.cols() > 0) {
          const MatD cb = extend_basis(qb.leftCols(nq), std::move(change), kChangeNoise, nb);
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
        counters.max_residual = std::max(counters.max_residual, res.head(k).maxCoeff());
        return th;
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
    ++counters.fallbacks;
    return exact_top(a, k + px, u, v);
  }

 private:
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



  /// Orthonormal basis of the part of span(d) orthogonal to the orthonormal columns of q (and of
  /// q2, when given), without the directions that are round-off: below 1e-10 of the largest, or
  /// below `floor` in norm.  d is projected off q; a column that lost more than 1 - 1/sqrt 2 of
  /// its norm to it is projected once more (Daniel-Gragg-Kaufman-Stewart: twice is enough).  Then
  /// Gram-Schmidt with column pivoting (the largest remaining column next, each new vector
  /// orthogonalized against the previous ones twice: the pivots are those of a column-pivoted
  /// QR).  Where a column lost most of its norm in the second projection too, or a pivot more
  /// than 1 - 1/sqrt 2 of its column's norm to the others, the basis is projected off q once more
  /// and orthonormalized again (the cancellation would magnify what round-off left of q in it).
  /// Random directions and Ritz residuals take one projection.  This needs q orthonormal to
  /// round-off (top() restores its warm start's orthonormality for it); a few columns at a time
  /// it is ~4x faster than Eigen's unblocked pivoted Householder QR with its Q formed, and each
  /// projection it skips saves a pass over q.
  static MatD extend_basis(const Eigen::Ref<const MatD>& q, MatD d, double floor,
                           const Eigen::Ref<const MatD>& q2 = MatD()) {
    const Index n = d.rows(), c = d.cols();
    if (c == 0) return MatD(n, 0);
    const auto project = [&](auto&& x) {
      if (q.cols() > 0) x.noalias() -= q * (q.transpose() * x);
      if (q2.cols() > 0) x.noalias() -= q2 * (q2.transpose() * x);
    };
    const VecD before = d.colwise().norm().transpose();
    project(d);
    VecD nrm = d.colwise().norm().transpose();
    bool cancelled = false;  // some column lost most of its norm twice: project the basis again
    std::vector<Index> again;
    for (Index i = 0; i < c; ++i)
      if (nrm(i) < kReorth * before(i)) again.push_back(i);
    if (!again.empty()) {
      MatD da(n, static_cast<Index>(again.size()));
      for (std::size_t i = 0; i < again.size(); ++i) da.col(static_cast<Index>(i)) = d.col(again[i]);
      project(da);
      for (std::size_t i = 0; i < again.size(); ++i) {
        const double once = nrm(again[i]);
        d.col(again[i]) = da.col(static_cast<Index>(i));
        nrm(again[i]) = da.col(static_cast<Index>(i)).norm();
        if (nrm(again[i]) < kReorth * once) cancelled = true;
      }
    }
    const VecD projected = nrm;
    MatD b(n, c);
    std::vector<char> used(static_cast<std::size_t>(c), 0);
    Index r = 0;
    double first = 0.0;
    for (; r < c; ++r) {
      Index j = -1;
      double largest = -1.0;
      for (Index i = 0; i < c; ++i)
        if (used[static_cast<std::size_t>(i)] == 0 && nrm(i) > largest) {
          largest = nrm(i);
          j = i;
        }
      if (r == 0) first = largest;
      if (!(largest > std::max(kRankTol * first, floor))) break;
      if (largest < kReorth * projected(j)) cancelled = true;
      used[static_cast<std::size_t>(j)] = 1;
      b.col(r) = d.col(j);
      orthonormalize_column(b, r);
      for (Index i = 0; i < c; ++i) {
        if (used[static_cast<std::size_t>(i)] != 0) continue;
        d.col(i) -= b.col(r) * b.col(r).dot(d.col(i));
        nrm(i) = d.col(i).norm();
      }
    }
    if (r == 0) return MatD(n, 0);
    b.conservativeResize(Eigen::NoChange, r);
    if (cancelled) {
      project(b);
      for (Index i = 0; i < r; ++i) orthonormalize_column(b, i);
    }
    return b;
  }

  /// The columns of w (nearly orthonormal) made orthonormal to round-off, column j still in the
  /// span of the first j + 1: Cholesky QR, w R^-1 with R^T R = w^T w.  For the warm start, the
  /// previous call's Ritz vectors Q c: orthonormal to round-off, but taken as they are that
  /// round-off accumulated from call to call (||V^T V - I|| of the warm start grew by ~1.1e-16
  /// per record: 6e-13 after 5000 records of a d = 20 factorization), and with it the error of
  /// Ritz values computed for a basis taken to be orthonormal.  False if w^T w is not positive
  /// definite (a column not finite, or dependent).
  static bool orthonormalize_in_order(MatD& w) {
    const Eigen::LLT<MatD> llt(w.transpose() * w);
    if (llt.info() != Eigen::Success || !w.allFinite()) return false;
    llt.matrixU().solveInPlace<Eigen::OnTheRight>(w);
    return w.allFinite();
  }

  /// Column i of b orthogonalized against columns 0..i-1 (orthonormal) and normalized.
  static void orthonormalize_column(MatD& b, Index i) {
    auto v = b.col(i);
    if (i > 0) v.noalias() -= b.leftCols(i) * (b.leftCols(i).transpose() * v);
    v /= v.norm();
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

  /// The fallback: a full SVD (Eigen's BDCSVD of a column-major copy); u, v the top `keep`.
  static VecD exact_top(const Mat<double>& a, Index keep, MatD& u, MatD& v) {
    Eigen::BDCSVD<MatD> svd(MatD(a), Eigen::ComputeThinU | Eigen::ComputeThinV);
    v = svd.matrixV().leftCols(keep);
    u = svd.matrixU().leftCols(keep);
    return svd.singularValues();
  }

  // Block steps per record while Ritz pairs after the k-th have not converged (the random
  // directions and the sketch expanded, the safeguard against a missed singular value), basis
  // size in blocks before a thick restart, round-off thresholds of a new block (relative to its
  // largest direction, and to s_1^2), and the residual standing for "unknown" (a Ritz value of 0
  // with a nonzero residual).
  static constexpr int kMinIter = 3;
  static constexpr Index kMaxBlocks = 8;
  static constexpr double kRankTol = 1e-10;
  static constexpr double kReorth = 0.7071067811865476;  // 1/sqrt 2: project (or orthonormalize) again below it
  static constexpr double kNoise = 1e-14;
  static constexpr double kChangeNoise = 1e-12;  // change sketch relative to the sketch: round-off
  static constexpr double kGramTol = 1e-3;       // Rayleigh–Ritz by the Gram matrix above this theta / theta_1
  static constexpr double kHuge = 1e100;

  KrylovOptions o_;
};

}  // namespace deeplinear
