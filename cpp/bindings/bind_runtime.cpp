// Threads, the BLAS library the core runs on (bound at import) and backend information.
// This translation unit defines Eigen's BLAS entry points (blas_dispatch.hpp's shims).
#define DEEPLINEAR_BLAS_DEFINE_SHIMS
#include "common.hpp"
#ifdef DEEPLINEAR_HAVE_OPENBLAS
#include "deeplinear/blas_dispatch.hpp"
#endif

namespace deeplinear_bindings {

namespace {

/// out = a @ b through the core's product path (for benchmarks: one GEMM, no allocation).
template <class Scalar>
void matmul(const Eigen::Ref<const deeplinear::Mat<Scalar>>& a, const Eigen::Ref<const deeplinear::Mat<Scalar>>& b,
            Eigen::Ref<deeplinear::Mat<Scalar>> out) {
  deeplinear::require(a.cols() == b.rows(), "b", "inner dimensions do not match");
  deeplinear::require(out.rows() == a.rows() && out.cols() == b.cols(), "out", "wrong shape");
  py::gil_scoped_release release;
  out.noalias() = a * b;
}

/// c = alpha op(a) op(b) + beta c through deeplinear::gemm, the product every training step uses
/// (small double products: the register-blocked kernel where built with AVX-512; else BLAS or
/// Eigen).  For tests: c is copied in and out (the core's gemm writes a Mat).
template <class Scalar>
void gemm_for_tests(Eigen::Ref<deeplinear::Mat<Scalar>> c, const Eigen::Ref<const deeplinear::Mat<Scalar>>& a,
                    bool trans_a, const Eigen::Ref<const deeplinear::Mat<Scalar>>& b, bool trans_b, double alpha,
                    double beta) {
  const auto m = trans_a ? a.cols() : a.rows();
  const auto k = trans_a ? a.rows() : a.cols();
  deeplinear::require((trans_b ? b.cols() : b.rows()) == k, "b", "inner dimensions do not match");
  deeplinear::require(c.rows() == m && c.cols() == (trans_b ? b.rows() : b.cols()), "c", "wrong shape");
  deeplinear::Mat<Scalar> out = c;
  deeplinear::gemm<Scalar>(out, a, trans_a, b, trans_b, static_cast<Scalar>(alpha), static_cast<Scalar>(beta));
  c = out;
}

}  // namespace

void bind_runtime(py::module_& m) {
#ifdef DEEPLINEAR_HAVE_OPENBLAS
  namespace blas = deeplinear::blas;
  m.def(
      "_blas_bind_loaded",
      [](const std::string& module_path, const std::string& reason) { blas::bind_loaded(module_path, reason); },
      py::arg("module_path"), py::arg("reason"),
      "Run the core's products on the OpenBLAS that the loaded shared object module_path (NumPy's "
      "_multiarray_umath) uses; RuntimeError saying why not.");
  m.def(
      "_blas_bind_file",
      [](const std::string& path, const std::string& source, const std::string& reason, bool mkl) {
        blas::bind_file(path, source, reason, mkl);
      },
      py::arg("path"), py::arg("source"), py::arg("reason"), py::arg("mkl") = false,
      "Run the core's products on the OpenBLAS (or with mkl, MKL's libmkl_rt) at path (loaded "
      "privately); RuntimeError saying why not.");
#endif
  m.def("matmul64", &matmul<double>, py::arg("a").noconvert(), py::arg("b").noconvert(),
        py::arg("out").noconvert(), "out = a @ b with the core's GEMM (float64, C-contiguous).");
  m.def("matmul32", &matmul<float>, py::arg("a").noconvert(), py::arg("b").noconvert(),
        py::arg("out").noconvert(), "out = a @ b with the core's GEMM (float32, C-contiguous).");
  m.def("_gemm64", &gemm_for_tests<double>, py::arg("c").noconvert(), py::arg("a").noconvert(),
        py::arg("trans_a"), py::arg("b").noconvert(), py::arg("trans_b"), py::arg("alpha"), py::arg("beta"),
        "Tests only: c = alpha op(a) op(b) + beta c through the core's product (float64, C-contiguous).");
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw std::invalid_argument("threads: must be >= 1");
#ifdef DEEPLINEAR_HAVE_OPENBLAS
        if (const auto* lib = deeplinear::blas::active()) lib->set_num_threads(n);
#endif
        Eigen::setNbThreads(n);
      },
      py::arg("threads"), "Number of threads of the matrix products (BLAS and Eigen).");
  m.def("get_num_threads", []() {
#ifdef DEEPLINEAR_HAVE_OPENBLAS
    if (const auto* lib = deeplinear::blas::active()) return lib->get_num_threads();
#endif
    return Eigen::nbThreads();
  });
  m.def("build_info", []() {
    py::dict d;
#ifdef DEEPLINEAR_HAVE_OPENBLAS
    const auto* lib = deeplinear::blas::active();
    d["blas"] = lib ? lib->vendor : std::string("openblas");
    d["blas_config"] = lib ? lib->config : std::string();
    d["blas_core"] = lib ? lib->core : std::string();
    d["blas_library"] = lib ? lib->path : std::string();
    d["blas_source"] = lib ? lib->source : std::string("none");
    d["blas_reason"] = lib ? lib->reason : std::string("no BLAS library bound");
    d["blas_int_bits"] = lib ? (lib->ilp64 ? 64 : 32) : 0;
    d["blas_symbols"] = lib ? lib->prefix + "dgemm_" + lib->suffix : std::string();
#else
    d["blas"] = "eigen";
    d["blas_config"] = "";
    d["blas_core"] = "";
#endif
    d["eigen_version"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                         "." + std::to_string(EIGEN_MINOR_VERSION);
    d["simd"] = std::string(Eigen::SimdInstructionSetsInUse());
#ifdef _OPENMP
    d["openmp"] = true;
#else
    d["openmp"] = false;
#endif
    return d;
  });
}

}  // namespace deeplinear_bindings
