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
  }
};

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

/// Rows [i0, i1) of the fused pass (see the header comment).  Writes b_out (the B rows), gu
/// (grad_U rows, without weight decay), adds to gv (this thread's S^T B buffer, zeroed by the
/// caller) and m (k x k, U^T G_B); returns the sum of squared errors.
template <int K>
double fused_rows(const SparseEntries& s, Index i0, Index i1, Index k_rt, const double* u, const double* a,
                  const double* v, double c, double* b_out, double* gu, double* gv, double* m) {
  const Index k = Width<K>::get(k_rt);
  double sse = 0.0;
  double b[K ? K : kMaxK], gb[K ? K : kMaxK];
  for (Index i = i0; i < i1; ++i) {
    const double* ui = u + i * k;
    // b = u_i A
    for (Index p = 0; p < k; ++p) b[p] = 0.0;
    for (Index q = 0; q < k; ++q) {
      const double uq = ui[q];
      const double* aq = a + q * k;
#pragma omp simd
      for (Index p = 0; p < k; ++p) b[p] += uq * aq[p];
    }
    std::memcpy(b_out + i * k, b, sizeof(double) * static_cast<std::size_t>(k));
    for (Index p = 0; p < k; ++p) gb[p] = 0.0;
    const std::int64_t e1 = s.row_ptr[i + 1];
    std::int64_t e = s.row_ptr[i];
    if (e == e1) {
      std::memset(gu + i * k, 0, sizeof(double) * static_cast<std::size_t>(k));
      continue;
    }
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
    // grad_U row: gb A^T; M += u_i^T gb
    double* gui = gu + i * k;
    for (Index p = 0; p < k; ++p) {
      const double* ap = a + p * k;
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (Index q = 0; q < k; ++q) acc += gb[q] * ap[q];
      gui[p] = acc;
    }
    for (Index p = 0; p < k; ++p) {
      const double up = ui[p];
      double* mp = m + p * k;
#pragma omp simd
      for (Index q = 0; q < k; ++q) mp[q] += up * gb[q];
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
/// with pool.size() parts, `gv_extra` one d_in x k buffer per thread beyond the first (thread 0
/// scatters into gv), `m_parts` pool.size() k x k buffers.  Results: b (B = U A), gu (G_B A^T),
/// gv (S^T B), m (U^T S V); returns the sum of squared errors on the entries.
inline double fused_pass(ThreadPool& pool, const SparseEntries& s, const std::vector<Index>& bounds, Index k,
                         const double* u, const double* a, const double* v, double c, double* b, double* gu,
                         double* gv, std::vector<double*>& gv_extra, double* m, std::vector<double*>& m_parts,
                         std::vector<double>& sse_parts) {
  require(k <= sparse_detail::kMaxK, "rank", "2r must be <= 128");
  const std::size_t gv_size = static_cast<std::size_t>(s.cols * k);
  const std::size_t m_size = static_cast<std::size_t>(k * k);
  auto task = [&](int t) {
    double* gvt = t == 0 ? gv : gv_extra[t - 1];
    std::memset(gvt, 0, sizeof(double) * gv_size);
    std::memset(m_parts[t], 0, sizeof(double) * m_size);
    sse_parts[t] = sparse_detail::dispatch_k(k, [&](auto kk) {
      return sparse_detail::fused_rows<decltype(kk)::value>(s, bounds[t], bounds[t + 1], k, u, a, v, c, b, gu, gvt,
                                                            m_parts[t]);
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
/// for the sparse matrix S of the entries' values; row-major dense operands.  Single-threaded
/// (used by the spectral initialization, a few products per model).
inline void sparse_product(const SparseEntries& s, const double* x, Index n, bool transpose, double* y) {
  const Index out_rows = transpose ? s.cols : s.rows;
  std::memset(y, 0, sizeof(double) * static_cast<std::size_t>(out_rows * n));
  for (Index i = 0; i < s.rows; ++i) {
    for (std::int64_t e = s.row_ptr[i]; e < s.row_ptr[i + 1]; ++e) {
      const Index j = s.col[e];
      const double w = s.val[e];
      const double* src = transpose ? x + i * n : x + j * n;
      double* dst = transpose ? y + j * n : y + i * n;
#pragma omp simd
      for (Index p = 0; p < n; ++p) dst[p] += w * src[p];
    }
  }
}

}  // namespace deeplinear
