// The small-GEMM kernel of gemm.hpp (detail::small_gemm_op) against the path gemm takes without
// it (detail::general_gemm: BLAS, with A B^T through the stack transpose), in one process on the
// same operands, interleaved.  Built and run by benchmarks/small_gemm.py (see there).
//
//   small_gemm <openblas library> check        every size 1..65 (m, k, n), layout, beta vs a
//                                               plain triple loop; exits 1 on a mismatch
//   small_gemm <openblas library> time <reps>  one CSV line per case:
//       case,m,k,n,trans_a,trans_b,beta,small_ns,blas_ns
#define DEEPLINEAR_BLAS_DEFINE_SHIMS
#include "deeplinear/gemm.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#if !defined(DEEPLINEAR_SMALL_GEMM)
#error "this build has no small-GEMM kernel (needs AVX2 + FMA or AVX-512)"
#endif

using deeplinear::Index;
using M = deeplinear::Mat<double>;

namespace {

M random(Index r, Index c, std::mt19937_64& g) {
  std::normal_distribution<double> nd;
  M x(r, c);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = nd(g);
  return x;
}

struct Case {
  Index m, k, n;
  bool ta, tb;
  double alpha, beta;
};

void run_small(const Case& p, const M& a, const M& b, M& c) {
  deeplinear::detail::small_gemm_op(p.ta, p.tb, p.m, p.k, p.n, a.data(), b.data(), c.data(), p.alpha, p.beta);
}
void run_blas(const Case& p, const M& a, const M& b, M& c) {
  deeplinear::detail::general_gemm<double>(c, a, p.ta, b, p.tb, p.alpha, p.beta);
}

// C = alpha op(A) op(B) + beta C by a plain triple loop (beta = 0: C not read).
M naive(const Case& p, const M& a, const M& b, const M& c0) {
  M c(p.m, p.n);
  for (Index i = 0; i < p.m; ++i)
    for (Index j = 0; j < p.n; ++j) {
      double s = 0.0;
      for (Index q = 0; q < p.k; ++q) s += (p.ta ? a(q, i) : a(i, q)) * (p.tb ? b(j, q) : b(q, j));
      c(i, j) = p.alpha * s + (p.beta == 0.0 ? 0.0 : p.beta * c0(i, j));
    }
  return c;
}

int check() {
  std::mt19937_64 g(1);
  long bad = 0, n_cases = 0;
  for (Index m = 1; m <= 65; ++m)
    for (Index n = 1; n <= 65; ++n) {
      const Index k = (m * 7 + n * 3) % 66;  // 0..65, varying with m and n
      for (int layout = 0; layout < 3; ++layout)
        for (double beta : {0.0, 1.0, 0.75}) {
          const Case p{m, k, n, layout == 1, layout == 2, -1.5, beta};
          if (!deeplinear::detail::use_small_kernel(m, k, n)) continue;
          const M a = p.ta ? random(k, m, g) : random(m, k, g);
          const M b = p.tb ? random(n, k, g) : random(k, n, g);
          M c0 = random(m, n, g);
          if (beta == 0.0) c0.setConstant(std::nan(""));
          M c = c0;
          run_small(p, a, b, c);
          const M e = naive(p, a, b, c0);
          const double err = (c - e).cwiseAbs().maxCoeff(), scale = std::max(1.0, e.cwiseAbs().maxCoeff());
          ++n_cases;
          if (!(err <= 1e-13 * scale * std::max<Index>(k, 1))) {
            std::printf("MISMATCH m=%ld k=%ld n=%ld ta=%d tb=%d beta=%g err=%g\n", long(m), long(k), long(n), p.ta,
                        p.tb, beta, err);
            ++bad;
          }
        }
    }
  std::printf("checked %ld products, %ld mismatches\n", n_cases, bad);
  return bad ? 1 : 0;
}

// ns per call: the best batch of `reps` calls out of `batches`, small and BLAS alternating.
void time_case(const char* name, const Case& p, int reps, int batches) {
  std::mt19937_64 g(2);
  const M a = p.ta ? random(p.k, p.m, g) : random(p.m, p.k, g);
  const M b = p.tb ? random(p.n, p.k, g) : random(p.k, p.n, g);
  const M c0 = random(p.m, p.n, g) * 1e-3;
  M cs = c0, cb = c0;
  double best[2] = {1e30, 1e30};
  for (int t = 0; t < batches; ++t)
    for (int which = 0; which < 2; ++which) {
      M& c = which ? cb : cs;
      c = c0;  // beta = 1 accumulates: restart from the same C every batch
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) which ? run_blas(p, a, b, c) : run_small(p, a, b, c);
      const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
      best[which] = std::min(best[which], ns / reps);
    }
  if (!((cs - cb).cwiseAbs().maxCoeff() <= 1e-9 * std::max(1.0, cb.cwiseAbs().maxCoeff()))) {
    std::printf("MISMATCH %s\n", name);
    std::exit(1);
  }
  std::printf("%s,%ld,%ld,%ld,%d,%d,%g,%.1f,%.1f\n", name, long(p.m), long(p.k), long(p.n), p.ta, p.tb, p.beta,
              best[0], best[1]);
  std::fflush(stdout);
}

int time_all(int reps) {
  std::printf("case,m,k,n,trans_a,trans_b,beta,small_ns,blas_ns\n");
  // the compressed step at 2r = 20 (Engine::evaluate, backward_fused with plain GD)
  time_case("step_forward", {20, 20, 20, false, false, 1.0, 0.0}, reps, 40);
  time_case("step_sweep", {20, 20, 20, true, false, 1.0, 0.0}, reps, 40);
  time_case("step_update", {20, 20, 20, false, true, -250.0, 1.0}, reps, 40);
  for (Index s = 2; s <= 64; ++s) {
    const int r = static_cast<int>(std::max<Index>(reps * 8000 / (s * s * s), 20));
    for (int layout = 0; layout < 3; ++layout) {
      const char* names[3] = {"square_nn", "square_tn", "square_nt"};
      if (s > deeplinear::detail::kSmallKernelCols) {
        // n beyond the kernel's columns: not timed (the kernel does not take them)
        continue;
      }
      time_case(names[layout], {s, s, s, layout == 1, layout == 2, 1.0, 0.0}, std::min(r, reps * 50), 15);
    }
    // k and m up to 64 with n = 20 (a 2r = 20 factor's tall / deep products)
    if (s > 20)
      time_case("n20", {s, s, 20, false, false, 1.0, 0.0}, static_cast<int>(std::max<Index>(reps * 8000 / (s * s * 20), 20)), 15);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <openblas library> check | time <reps>\n", argv[0]);
    return 2;
  }
  deeplinear::blas::bind_file(argv[1], "bench", "benchmarks/small_gemm.cpp");
  const std::string mode = argv[2];
  if (mode == "check") return check();
  return time_all(argc > 3 ? std::atoi(argv[3]) : 2000);
}
