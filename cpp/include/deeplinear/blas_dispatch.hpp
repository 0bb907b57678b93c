// The BLAS library the core's products run on, chosen at run time.
//
// Every BLAS routine the core calls goes through one table of function pointers: Eigen's own
// BLAS calls (EIGEN_USE_BLAS; the build maps Eigen's Fortran names `dgemm_`, ... onto the
// `deeplinear_dgemm_`, ... shims defined below) and deeplinear::gemm's (blas::gemm).  The table
// is filled from an OpenBLAS found at run time, never linked:
//
//   - the OpenBLAS NumPy itself uses, when NumPy runs on one (bind_loaded): its symbols are
//     looked up in the dependency scope of NumPy's already-loaded extension module, so the core
//     and NumPy then share one library and one pool of worker threads (two pools that each keep
//     spinning after a call slow each other down when NumPy and the core take turns);
//   - otherwise a library given by path (bind_file; the PyPI package scipy-openblas32);
//   - or Intel MKL's single dynamic library libmkl_rt (bind_file with vendor "mkl"; the PyPI
//     package mkl), through its Fortran entry points with the LP64 interface (32-bit integers,
//     set explicitly at bind time) and its own OpenMP thread pool.
//
// OpenBLAS builds differ in symbol names (a prefix such as `scipy_`, a suffix such as `64_`)
// and in the integer width of the Fortran interface (ILP64: 64-bit integers, `USE64BITINT` in
// its configuration string); both are detected, and the shims widen Eigen's `const int*`
// arguments to 64-bit integers for an ILP64 library.  A bound library is never unloaded, and
// the active one is swapped atomically, so a product running during a rebind finishes on the
// library it started with.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <dlfcn.h>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace deeplinear::blas {

// The Fortran routines Eigen may call for real types (complex ones are not mapped: a product
// that needs one fails to load, loudly), in the order of the table.  Eigen's triangular
// matrix-vector product calls ?axpy; the rest are its level-2/3 products.
#define DEEPLINEAR_BLAS_ROUTINES(X) \
  X(sgemm) X(dgemm) X(sgemv) X(dgemv) X(strmv) X(dtrmv) X(ssymv) X(dsymv) X(strsm) X(dtrsm) X(strmm) \
  X(dtrmm) X(ssymm) X(dsymm) X(ssyrk) X(dsyrk) X(saxpy) X(daxpy)

enum Routine : int {
#define DEEPLINEAR_BLAS_ENUM(name) k_##name,
  DEEPLINEAR_BLAS_ROUTINES(DEEPLINEAR_BLAS_ENUM)
#undef DEEPLINEAR_BLAS_ENUM
  kRoutines
};

inline constexpr const char* kRoutineNames[kRoutines] = {
#define DEEPLINEAR_BLAS_NAME(name) #name,
    DEEPLINEAR_BLAS_ROUTINES(DEEPLINEAR_BLAS_NAME)
#undef DEEPLINEAR_BLAS_NAME
};

/// One bound library (OpenBLAS or MKL): its symbols and what is known about it.
struct Library {
  void* fn[kRoutines] = {};
  void (*set_num_threads)(int) = nullptr;
  int (*get_num_threads)() = nullptr;
  bool ilp64 = false;
  // vendor: "openblas" or "mkl"; config: OpenBLAS's configuration or MKL's version string;
  // core: the kernel OpenBLAS chose (its core name) or MKL's code path
  std::string vendor, config, core, path, prefix, suffix, source, reason;
};

namespace detail {

inline std::atomic<const Library*>& active_slot() {
  static std::atomic<const Library*> slot{nullptr};
  return slot;
}

inline const Library& require_active() {
  const Library* lib = active_slot().load(std::memory_order_acquire);
  if (lib == nullptr)
    throw std::runtime_error("deeplinear: no BLAS library bound (the core's products need one; "
                             "import deeplinear, which binds it)");
  return *lib;
}

/// An argument passed on unchanged, or (const int*, for an ILP64 library) widened to a 64-bit
/// integer that lives until the end of the call's full expression.
template <class T>
struct Widen {
  T v;
  explicit Widen(T x) : v(x) {}
  T get() const { return v; }
};
template <>
struct Widen<const int*> {
  std::int64_t v;
  explicit Widen(const int* p) : v(*p) {}
  const std::int64_t* get() const { return &v; }
};
template <class T>
using widened_t = decltype(std::declval<Widen<T>>().get());

inline void* find_symbol(void* handle, const std::string& name) {
  dlerror();
  return dlsym(handle, name.c_str());
}

/// The symbols of the OpenBLAS reachable from `handle` (its own, or, for a module's handle, the
/// first OpenBLAS among its dependencies), into `lib`; throws, naming what is missing.
inline void resolve(void* handle, Library& lib) {
  static const char* const prefixes[] = {"", "scipy_"};
  static const char* const suffixes[] = {"", "64_", "_64"};
  void* config = nullptr;
  for (const char* p : prefixes) {
    for (const char* s : suffixes) {
      config = find_symbol(handle, std::string(p) + "openblas_get_config" + s);
      if (config != nullptr) {
        lib.prefix = p;
        lib.suffix = s;
        break;
      }
    }
    if (config != nullptr) break;
  }
  if (config == nullptr)
    throw std::runtime_error("no OpenBLAS symbols (openblas_get_config, with or without the prefix scipy_ "
                             "or a 64_ suffix)");
  const auto c_symbol = [&](const char* name) {
    void* f = find_symbol(handle, lib.prefix + name + lib.suffix);
    if (f == nullptr) throw std::runtime_error("missing symbol " + lib.prefix + name + lib.suffix);
    return f;
  };
  const auto text = [](void* f) {
    const char* t = reinterpret_cast<char* (*)()>(f)();
    return std::string(t ? t : "");
  };
  lib.vendor = "openblas";
  lib.config = text(config);
  lib.core = text(c_symbol("openblas_get_corename"));
  lib.set_num_threads = reinterpret_cast<void (*)(int)>(c_symbol("openblas_set_num_threads"));
  lib.get_num_threads = reinterpret_cast<int (*)()>(c_symbol("openblas_get_num_threads"));
  for (int r = 0; r < kRoutines; ++r) lib.fn[r] = c_symbol((std::string(kRoutineNames[r]) + "_").c_str());
  lib.ilp64 = lib.config.find("USE64BITINT") != std::string::npos;
  Dl_info info{};
  if (dladdr(lib.fn[k_dgemm], &info) != 0 && info.dli_fname != nullptr) lib.path = info.dli_fname;
}

/// The symbols of MKL's single dynamic library libmkl_rt (`handle`), into `lib`: the Fortran
/// routines (`dgemm_`, ...) with the LP64 interface, chosen here (MKL_Set_Interface_Layer; a
/// process that already chose ILP64 is refused), the thread count (MKL_Set_Num_Threads /
/// MKL_Get_Max_Threads) and the version.  Throws, naming what is missing.
inline void resolve_mkl(void* handle, Library& lib) {
  const auto symbol = [&](const char* name) {
    void* f = find_symbol(handle, name);
    if (f == nullptr) throw std::runtime_error(std::string("not MKL's libmkl_rt: missing symbol ") + name);
    return f;
  };
  auto* version = reinterpret_cast<void (*)(char*, int)>(symbol("MKL_Get_Version_String"));
  auto* layer = reinterpret_cast<int (*)(int)>(symbol("MKL_Set_Interface_Layer"));
  constexpr int kLP64 = 0;  // MKL_INTERFACE_LP64
  if (layer(kLP64) != kLP64)
    throw std::runtime_error("MKL's interface layer is already ILP64 in this process (MKL_INTERFACE_LAYER)");
  lib.vendor = "mkl";
  lib.set_num_threads = reinterpret_cast<void (*)(int)>(symbol("MKL_Set_Num_Threads"));
  lib.get_num_threads = reinterpret_cast<int (*)()>(symbol("MKL_Get_Max_Threads"));
  for (int r = 0; r < kRoutines; ++r) lib.fn[r] = symbol((std::string(kRoutineNames[r]) + "_").c_str());
  char buf[256] = {};
  version(buf, sizeof buf - 1);
  lib.config = buf;
  lib.core = "MKL (code path chosen by MKL for this CPU)";
  lib.ilp64 = false;
  Dl_info info{};
  if (dladdr(lib.fn[k_dgemm], &info) != 0 && info.dli_fname != nullptr) lib.path = info.dli_fname;
}

inline const Library& activate(Library* lib) {
  // the thread count carries over from the library in use before
  if (const Library* old = active_slot().load(std::memory_order_acquire))
    if (old->get_num_threads != nullptr) lib->set_num_threads(old->get_num_threads());
  active_slot().store(lib, std::memory_order_release);  // never freed: calls in flight keep it
  return *lib;
}

}  // namespace detail

namespace detail {

/// Resolve the OpenBLAS reachable from `handle` (dlopen's, or nullptr with dlerror's message)
/// and make it the active library; the handle stays open (the library must not go away).
inline const Library& bind_handle(void* handle, const std::string& what, const std::string& source,
                                  const std::string& reason, bool mkl = false) {
  if (handle == nullptr) {
    const char* err = dlerror();
    throw std::runtime_error(what + " (" + (err ? err : "dlopen failed") + ")");
  }
  auto* lib = new Library();
  try {
    if (mkl)
      resolve_mkl(handle, *lib);
    else
      resolve(handle, *lib);
  } catch (...) {
    delete lib;
    dlclose(handle);
    throw;
  }
  lib->source = source;
  lib->reason = reason;
  return activate(lib);
}

}  // namespace detail

/// Bind the OpenBLAS that the already-loaded shared object `module_path` (NumPy's
/// _multiarray_umath) uses, without loading anything.  Throws std::runtime_error saying why not.
inline const Library& bind_loaded(const std::string& module_path, const std::string& reason) {
  return detail::bind_handle(dlopen(module_path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD),
                             module_path + " is not loaded", "numpy", reason);
}

/// Bind the library at `path` (an OpenBLAS, or with `mkl` MKL's libmkl_rt), loading it
/// (privately) if needed.
inline const Library& bind_file(const std::string& path, const std::string& source, const std::string& reason,
                                bool mkl = false) {
  return detail::bind_handle(dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL), "cannot load " + path, source, reason,
                             mkl);
}

/// The library in use, or nullptr before the first bind.
inline const Library* active() { return detail::active_slot().load(std::memory_order_acquire); }

/// Call routine `r` of the active library with Fortran (LP64) arguments, widened for ILP64.
template <class... A>
inline void call(Routine r, A... a) {
  const Library& lib = detail::require_active();
  if (lib.ilp64)
    reinterpret_cast<void (*)(detail::widened_t<A>...)>(lib.fn[r])(detail::Widen<A>(a).get()...);
  else
    reinterpret_cast<void (*)(A...)>(lib.fn[r])(a...);
}

/// Column-major C (m x n) = alpha op(A) op(B) + beta C (Fortran ?gemm), 64-bit sizes passed as
/// such to an ILP64 library (no narrowing there).
template <class Scalar>
inline void gemm(char ta, char tb, std::int64_t m, std::int64_t n, std::int64_t k, Scalar alpha, const Scalar* a,
                 std::int64_t lda, const Scalar* b, std::int64_t ldb, Scalar beta, Scalar* c, std::int64_t ldc) {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>, "gemm: float or double");
  const Library& lib = detail::require_active();
  const Routine r = std::is_same_v<Scalar, double> ? k_dgemm : k_sgemm;
  if (lib.ilp64) {
    using F = void (*)(const char*, const char*, const std::int64_t*, const std::int64_t*, const std::int64_t*,
                       const Scalar*, const Scalar*, const std::int64_t*, const Scalar*, const std::int64_t*,
                       const Scalar*, Scalar*, const std::int64_t*);
    reinterpret_cast<F>(lib.fn[r])(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
  } else {
    const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
    const int ldai = static_cast<int>(lda), ldbi = static_cast<int>(ldb), ldci = static_cast<int>(ldc);
    call(r, static_cast<const char*>(&ta), static_cast<const char*>(&tb), &mi, &ni, &ki,
         static_cast<const Scalar*>(&alpha), a, &ldai, b, &ldbi, static_cast<const Scalar*>(&beta), c, &ldci);
  }
}

}  // namespace deeplinear::blas

// Eigen's BLAS entry points (declared by Eigen/src/misc/blas.h under the names the build maps
// them to), defined once, in the translation unit that defines DEEPLINEAR_BLAS_DEFINE_SHIMS.
#if defined(EIGEN_USE_BLAS) && defined(DEEPLINEAR_BLAS_DEFINE_SHIMS)
// (the parameter lists are Eigen's; ?trsm and ?trmm share theirs)
#define DEEPLINEAR_BLAS_TRIANGULAR_MM_SHIM(T, p, f)                                                          \
  extern "C" int deeplinear_##p##f##_(const char* a0, const char* a1, const char* a2, const char* a3,         \
                                      const int* a4, const int* a5, const T* a6, const T* a7, const int* a8,  \
                                      T* a9, const int* a10) {                                               \
    deeplinear::blas::call(deeplinear::blas::k_##p##f, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10);          \
    return 0;                                                                                                \
  }
#define DEEPLINEAR_BLAS_SHIMS_FOR(T, p)                                                                        \
  extern "C" int deeplinear_##p##gemm_(const char* a0, const char* a1, const int* a2, const int* a3,          \
                                       const int* a4, const T* a5, const T* a6, const int* a7, const T* a8,  \
                                       const int* a9, const T* a10, T* a11, const int* a12) {                \
    deeplinear::blas::call(deeplinear::blas::k_##p##gemm, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, \
                           a12);                                                                             \
    return 0;                                                                                                \
  }                                                                                                          \
  extern "C" int deeplinear_##p##gemv_(const char* a0, const int* a1, const int* a2, const T* a3, const T* a4, \
                                       const int* a5, const T* a6, const int* a7, const T* a8, T* a9,         \
                                       const int* a10) {                                                     \
    deeplinear::blas::call(deeplinear::blas::k_##p##gemv, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10);      \
    return 0;                                                                                                \
  }                                                                                                          \
  extern "C" int deeplinear_##p##trmv_(const char* a0, const char* a1, const char* a2, const int* a3,        \
                                       const T* a4, const int* a5, T* a6, const int* a7) {                   \
    deeplinear::blas::call(deeplinear::blas::k_##p##trmv, a0, a1, a2, a3, a4, a5, a6, a7);                   \
    return 0;                                                                                                \
  }                                                                                                          \
  extern "C" int deeplinear_##p##symv_(const char* a0, const int* a1, const T* a2, const T* a3, const int* a4, \
                                       const T* a5, const int* a6, const T* a7, T* a8, const int* a9) {      \
    deeplinear::blas::call(deeplinear::blas::k_##p##symv, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9);           \
    return 0;                                                                                                \
  }                                                                                                          \
  DEEPLINEAR_BLAS_TRIANGULAR_MM_SHIM(T, p, trsm)                                                             \
  DEEPLINEAR_BLAS_TRIANGULAR_MM_SHIM(T, p, trmm)                                                             \
  extern "C" int deeplinear_##p##symm_(const char* a0, const char* a1, const int* a2, const int* a3,          \
                                       const T* a4, const T* a5, const int* a6, const T* a7, const int* a8,  \
                                       const T* a9, T* a10, const int* a11) {                                \
    deeplinear::blas::call(deeplinear::blas::k_##p##symm, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11); \
    return 0;                                                                                                \
  }                                                                                                          \
  extern "C" int deeplinear_##p##syrk_(const char* a0, const char* a1, const int* a2, const int* a3,          \
                                       const T* a4, const T* a5, const int* a6, const T* a7, T* a8,          \
                                       const int* a9) {                                                      \
    deeplinear::blas::call(deeplinear::blas::k_##p##syrk, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9);           \
    return 0;                                                                                                \
  }                                                                                                          \
  extern "C" int deeplinear_##p##axpy_(const int* a0, const T* a1, const T* a2, const int* a3, T* a4,         \
                                       const int* a5) {                                                      \
    deeplinear::blas::call(deeplinear::blas::k_##p##axpy, a0, a1, a2, a3, a4, a5);                           \
    return 0;                                                                                                \
  }
DEEPLINEAR_BLAS_SHIMS_FOR(float, s)
DEEPLINEAR_BLAS_SHIMS_FOR(double, d)
#undef DEEPLINEAR_BLAS_SHIMS_FOR
#undef DEEPLINEAR_BLAS_TRIANGULAR_MM_SHIM
#endif
