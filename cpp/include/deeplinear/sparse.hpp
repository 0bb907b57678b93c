// Observed-entry kernels of compressed matrix completion (MATH.md §4).
//
// The entries of a d_out x d_in matrix are stored sorted by row (CSR: row_ptr of d_out + 1
// offsets, then the column index and value of every entry), so that a pass over them reads the
// entries sequentially and each row's r-vector B_i = (U A)_i stays in registers while the
// row's entries are visited; the column factors V are rows of a row-major d_in x k matrix, so
// the k numbers an entry needs are contiguous (one or two cache lines at k = 2r <= 16).
//
// With A = W~_L ... W~_1 (k x k) and B = U A, an entry (i, j) predicts B_i . V_j.  One pass over
// the entries (threads over blocks of rows with about equal numbers of entries) gives
//   the loss sum_Omega (B_i . V_j - phi_ij)^2,
//   G_B = S V   (row i: sum_j e_ij V_j, e = c (prediction - phi)),
//   S^T B       (the gradient of V; scattered into one buffer per thread, summed afterwards),
//   grad_U = G_B A^T and M = U^T G_B  (per row, while G_B_i is in registers),
// so a step costs 6 k |Omega| + O(d k^2) flops and O(|Omega| + d k) memory, never d x d.
#pragma once

#include "deeplinear/threads.hpp"
#include "deeplinear/types.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace deeplinear {

/// Entries sorted by row (a view: the arrays belong to the caller).
struct SparseEntries {
  Index rows = 0, cols = 0;
  const std::int64_t* row_ptr = nullptr;  // rows + 1 offsets, row_ptr[0] = 0
  const std::int32_t* col = nullptr;      // nnz column indices, each row's sorted
  const double* val = nullptr;            // nnz values
  Index nnz() const { return rows == 0 ? 0 : static_cast<Index>(row_ptr[rows]); }

  /// Checks the layout (offsets non-decreasing, columns in range); O(nnz), done once.
  void validate(const char* name) const {
    require(row_ptr != nullptr && row_ptr[0] == 0, name, "row offsets must start at 0");
    for (Index i = 0; i < rows; ++i) require(row_ptr[i] <= row_ptr[i + 1], name, "row offsets must not decrease");
    const Index n = nnz();
    for (Index e = 0; e < n; ++e) require(col[e] >= 0 && col[e] < cols, name, "column index out of range");
    for (Index i = 0; i < rows; ++i)
      for (std::int64_t e = row_ptr[i] + 1; e < row_ptr[i + 1]; ++e)
        require(col[e - 1] < col[e], name, "each row's column indices must be increasing");
  }
};

/// Threads for a pass over nnz entries: one per kEntriesPerThread entries, at most `threads`.
/// Below that a pass takes tens of microseconds and waking a second thread costs as much (and
/// far more on a loaded machine).
inline constexpr Index kEntriesPerThread = 32768;
inline int threads_for(Index nnz, int threads) {
  return static_cast<int>(std::max<Index>(1, std::min<Index>(threads, nnz / kEntriesPerThread)));
}

/// Row ranges [bounds[t], bounds[t+1]) holding about nnz / parts entries each.
inline std::vector<Index> balanced_rows(const SparseEntries& s, int parts) {
  std::vector<Index> b(static_cast<std::size_t>(parts) + 1, s.rows);
  b[0] = 0;
  const std::int64_t n = s.nnz();
  for (int t = 1; t < parts; ++t) {
    const std::int64_t target = n * t / parts;
    b[t] = static_cast<Index>(std::lower_bound(s.row_ptr, s.row_ptr + s.rows + 1, target) - s.row_ptr);
    b[t] = std::max(b[t], b[t - 1]);
  }
  return b;
}

/// Column blocks of a pass over the entries: block b holds the columns [b w, (b + 1) w), and
/// row i's entries in block b are [begin(s, b, i), end(s, b, i)) (each row's columns are sorted,
/// so these are contiguous runs of the row: no copy of the entries).  A pass visits block by
/// block, rows in order within a block, so the V rows (and the S^T B rows) of one block are
/// read from cache instead of from memory at random: at d = 10^5 and k = 10 they are 8 MB each.
struct ColumnBlocks {
  Index width = 0, count = 1;
  std::vector<std::int64_t> start;  // start of block b >= 1 in row i at (b - 1) * rows + i
  std::int64_t begin(const SparseEntries& s, Index b, Index i) const {
    return b == 0 ? s.row_ptr[i] : start[static_cast<std::size_t>((b - 1) * s.rows + i)];
  }
  std::int64_t end(const SparseEntries& s, Index b, Index i) const {
    return b + 1 == count ? s.row_ptr[i + 1] : start[static_cast<std::size_t>(b * s.rows + i)];
  }
};

/// Bytes of the per-block rows (V_j and the S^T B buffer's row, k doubles each) a block may
/// span: 2 MB, so that two threads' blocks share a 16 MB L3 cache with room to spare.  Measured
/// at d = 10^5, |Omega| = 10^7, k = 10, 2 threads, ms per step by block width: 553 (one block,
/// all 10^5 columns), 325 (25000), 322 (12500), 418 (6400), 541 (3200, L2-sized), 793 (1600):
/// smaller blocks leave a row's run in a block too short (about |Omega|/d * w/d entries).
inline constexpr Index kColumnBlockBytes = 1 << 21;

/// The default column block width for rows of k doubles (all columns when they fit).
inline Index column_block_width(Index cols, Index k) {
  return std::max<Index>(1, std::min<Index>(cols, kColumnBlockBytes / (2 * 8 * std::max<Index>(k, 1))));
}

/// The column blocks of width `width` (<= 0: one block); O(nnz + rows * blocks), done once.
inline ColumnBlocks column_blocks(const SparseEntries& s, Index width) {
  ColumnBlocks cb;
  cb.width = (width <= 0 || width >= s.cols) ? std::max<Index>(s.cols, 1) : width;
  cb.count = std::max<Index>(1, (s.cols + cb.width - 1) / cb.width);
  cb.start.resize(static_cast<std::size_t>((cb.count - 1) * s.rows));
  for (Index i = 0; i < s.rows; ++i) {
    std::int64_t e = s.row_ptr[i];
    const std::int64_t e1 = s.row_ptr[i + 1];
    for (Index b = 1; b < cb.count; ++b) {
      const Index bound = b * cb.width;
      while (e < e1 && s.col[e] < bound) ++e;
      cb.start[static_cast<std::size_t>((b - 1) * s.rows + i)] = e;
    }
  }
  return cb;
}

namespace sparse_detail {

/// Width of the row vectors: a compile-time K for the usual 2r, 0 for any other (runtime k).
template <int K>
struct Width {
  static constexpr Index get(Index) { return K; }
};
template <>
struct Width<0> {
  static Index get(Index k) { return k; }
};
// Vector registers of the row vectors: at most this k on the stack.
inline constexpr Index kMaxK = 128;

/// Rows [i0, i1) of the fused pass (see the header comment), column block by column block.
/// Writes b_out (the B rows), gb (G_B = S V rows) and gu (grad_U rows, without weight decay),
/// adds to gv (this thread's S^T B buffer, zeroed by the caller) and m (k x k, U^T G_B); returns
/// the sum of squared errors.
template <int K>
double fused_rows(const SparseEntries& s, const ColumnBlocks& cb, Index i0, Index i1, Index k_rt, const double* u,
                  const double* a, const double* v, double c, double* b_out, double* gb_out, double* gu, double* gv,
                  double* m) {
  const Index k = Width<K>::get(k_rt);
  const std::size_t kb = sizeof(double) * static_cast<std::size_t>(k);
  double sse = 0.0;
  double b[K ? K : kMaxK], gb[K ? K : kMaxK];
  // B rows = u_i A (sequential), G_B rows zeroed
  for (Index i = i0; i < i1; ++i) {
    const double* ui = u + i * k;
    for (Index p = 0; p < k; ++p) b[p] = 0.0;
    for (Index q = 0; q < k; ++q) {
      const double uq = ui[q];
      const double* aq = a + q * k;
#pragma omp simd
      for (Index p = 0; p < k; ++p) b[p] += uq * aq[p];
    }
    std::memcpy(b_out + i * k, b, kb);
    std::memset(gb_out + i * k, 0, kb);
  }
  // the entries, one column block at a time (its V and gv rows stay in cache)
  for (Index blk = 0; blk < cb.count; ++blk) {
    for (Index i = i0; i < i1; ++i) {
      std::int64_t e = cb.begin(s, blk, i);
      const std::int64_t e1 = cb.end(s, blk, i);
      if (e == e1) continue;
      std::memcpy(b, b_out + i * k, kb);
      std::memcpy(gb, gb_out + i * k, kb);
      for (; e < e1; ++e) {
        const Index j = s.col[e];
        const double* vj = v + j * k;
        double pred = 0.0;
#pragma omp simd reduction(+ : pred)
        for (Index p = 0; p < k; ++p) pred += b[p] * vj[p];
        const double r = pred - s.val[e];
        sse += r * r;
        const double er = c * r;
        double* gvj = gv + j * k;
#pragma omp simd
        for (Index p = 0; p < k; ++p) {
          gb[p] += er * vj[p];
          gvj[p] += er * b[p];
        }
      }
      std::memcpy(gb_out + i * k, gb, kb);
    }
  }
  // grad_U row: gb A^T; M += u_i^T gb
  for (Index i = i0; i < i1; ++i) {
    const double* ui = u + i * k;
    const double* gbi = gb_out + i * k;
    double* gui = gu + i * k;
    for (Index p = 0; p < k; ++p) {
      const double* ap = a + p * k;
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (Index q = 0; q < k; ++q) acc += gbi[q] * ap[q];
      gui[p] = acc;
    }
    for (Index p = 0; p < k; ++p) {
      const double up = ui[p];
      double* mp = m + p * k;
#pragma omp simd
      for (Index q = 0; q < k; ++q) mp[q] += up * gbi[q];
    }
  }
  return sse;
}

/// Sum over rows [i0, i1) of (B_i . V_j - phi_ij)^2 and of phi_ij^2 (the test entries).
template <int K>
double error_rows(const SparseEntries& s, Index i0, Index i1, Index k_rt, const double* b, const double* v) {
  const Index k = Width<K>::get(k_rt);
  double sse = 0.0;
  for (Index i = i0; i < i1; ++i) {
    const double* bi = b + i * k;
    for (std::int64_t e = s.row_ptr[i]; e < s.row_ptr[i + 1]; ++e) {
      const double* vj = v + static_cast<Index>(s.col[e]) * k;
      double pred = 0.0;
#pragma omp simd reduction(+ : pred)
      for (Index p = 0; p < k; ++p) pred += bi[p] * vj[p];
      const double r = pred - s.val[e];
      sse += r * r;
    }
  }
  return sse;
}

/// Calls f.template operator()<K>() with K = k for the common sizes, else K = 0.
template <class F>
decltype(auto) dispatch_k(Index k, F&& f) {
  switch (k) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 10: return f(std::integral_constant<int, 10>{});
    case 12: return f(std::integral_constant<int, 12>{});
    case 16: return f(std::integral_constant<int, 16>{});
    case 20: return f(std::integral_constant<int, 20>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

}  // namespace sparse_detail

/// The fused pass over the observed entries with a thread pool: `bounds` from balanced_rows
/// with pool.size() parts, `cb` the column blocks, `gv_extra` one d_in x k buffer per thread
/// beyond the first (thread 0 scatters into gv), `m_parts` pool.size() k x k buffers.  Results:
/// b (B = U A), gb (G_B = S V), gu (G_B A^T), gv (S^T B), m (U^T S V); returns the sum of
/// squared errors on the entries.
inline double fused_pass(ThreadPool& pool, const SparseEntries& s, const ColumnBlocks& cb,
                         const std::vector<Index>& bounds, Index k, const double* u, const double* a, const double* v,
                         double c, double* b, double* gb, double* gu, double* gv, std::vector<double*>& gv_extra,
                         double* m, std::vector<double*>& m_parts, std::vector<double>& sse_parts) {
  require(k <= sparse_detail::kMaxK, "rank", "2r must be <= 128");
  const std::size_t gv_size = static_cast<std::size_t>(s.cols * k);
  const std::size_t m_size = static_cast<std::size_t>(k * k);
  auto task = [&](int t) {
    double* gvt = t == 0 ? gv : gv_extra[t - 1];
    std::memset(gvt, 0, sizeof(double) * gv_size);
    std::memset(m_parts[t], 0, sizeof(double) * m_size);
    sse_parts[t] = sparse_detail::dispatch_k(k, [&](auto kk) {
      return sparse_detail::fused_rows<decltype(kk)::value>(s, cb, bounds[t], bounds[t + 1], k, u, a, v, c, b, gb, gu,
                                                            gvt, m_parts[t]);
    });
  };
  pool.run(task);
  double sse = 0.0;
  std::memcpy(m, m_parts[0], sizeof(double) * m_size);
  for (int t = 0; t < pool.size(); ++t) {
    sse += sse_parts[t];
    if (t == 0) continue;
    const double* src = gv_extra[t - 1];
#pragma omp simd
    for (std::size_t q = 0; q < gv_size; ++q) gv[q] += src[q];
    const double* mt = m_parts[t];
    for (std::size_t q = 0; q < m_size; ++q) m[q] += mt[q];
  }
  return sse;
}

/// Sum of squared errors of the prediction B_i . V_j on the entries s (threads over rows).
inline double error_pass(ThreadPool& pool, const SparseEntries& s, const std::vector<Index>& bounds, Index k,
                         const double* b, const double* v, std::vector<double>& sse_parts) {
  auto task = [&](int t) {
    sse_parts[t] = sparse_detail::dispatch_k(k, [&](auto kk) {
      return sparse_detail::error_rows<decltype(kk)::value>(s, bounds[t], bounds[t + 1], k, b, v);
    });
  };
  pool.run(task);
  double sse = 0.0;
  for (int t = 0; t < pool.size(); ++t) sse += sse_parts[t];
  return sse;
}

/// y = S x (transpose = false: x is d_in x n, y d_out x n) or y = S^T x (x d_out x n, y d_in x n)
/// for the sparse matrix S of the entries' values; row-major dense operands.  Threads over
/// blocks of rows (S^T x: one d_in x n buffer per thread beyond the first, summed), column
/// blocks as in the fused pass (the spectral initialization: a few products per model).
inline void sparse_product(const SparseEntries& s, const double* x, Index n, bool transpose, double* y,
                           int threads = 1) {
  const Index out_rows = transpose ? s.cols : s.rows;
  const std::size_t out_size = static_cast<std::size_t>(out_rows * n);
  ThreadPool pool(threads_for(s.nnz(), threads));
  const int T = pool.size();
  const std::vector<Index> bounds = balanced_rows(s, T);
  const ColumnBlocks cb = column_blocks(s, column_block_width(s.cols, n));
  std::vector<std::vector<double>> extra(static_cast<std::size_t>(transpose && T > 1 ? T - 1 : 0),
                                         std::vector<double>(out_size));
  std::memset(y, 0, sizeof(double) * out_size);
  auto task = [&](int t) {
    double* dst0 = (transpose && t > 0) ? extra[static_cast<std::size_t>(t - 1)].data() : y;
    for (Index blk = 0; blk < cb.count; ++blk) {
      for (Index i = bounds[t]; i < bounds[t + 1]; ++i) {
        for (std::int64_t e = cb.begin(s, blk, i); e < cb.end(s, blk, i); ++e) {
          const Index j = s.col[e];
          const double w = s.val[e];
          const double* src = transpose ? x + i * n : x + j * n;
          double* dst = transpose ? dst0 + j * n : dst0 + i * n;
#pragma omp simd
          for (Index p = 0; p < n; ++p) dst[p] += w * src[p];
        }
      }
    }
  };
  pool.run(task);
  for (const auto& buf : extra)
    for (std::size_t q = 0; q < out_size; ++q) y[q] += buf[q];
}

}  // namespace deeplinear
