// Common types of the deeplinear core.
//
// Storage order: every matrix is row-major, so that a C-contiguous NumPy array maps onto it
// without a copy (the bindings accept only C-contiguous arrays of the right dtype).
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace deeplinear {

template <class Scalar>
using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using MatRef = Eigen::Ref<Mat<Scalar>>;
template <class Scalar>
using ConstMatRef = Eigen::Ref<const Mat<Scalar>>;
template <class Scalar>
using ConstMatMap = Eigen::Map<const Mat<Scalar>>;

using Index = Eigen::Index;

/// Outcome of a training run (or of the part of it run so far).
enum class Status { Running, MaxSteps, Converged, Diverged };

inline const char* status_name(Status s) {
  switch (s) {
    case Status::Running: return "running";
    case Status::MaxSteps: return "max_steps";
    case Status::Converged: return "converged";
    case Status::Diverged: return "diverged";
  }
  return "unknown";
}

/// Throws std::invalid_argument("<name>: <what>") unless cond holds.  The bindings turn it into
/// a Python ValueError; the Python layer checks first, this is the second line.
inline void require(bool cond, const char* name, const std::string& what) {
  if (!cond) throw std::invalid_argument(std::string(name) + ": " + what);
}
/// The same for a literal message: no std::string is built unless the check fails (checks on
/// the step path, e.g. every GEMM's shapes, would otherwise allocate one per call).
inline void require(bool cond, const char* name, const char* what) {
  if (!cond) throw std::invalid_argument(std::string(name) + ": " + what);
}

template <class Derived>
bool all_finite(const Eigen::DenseBase<Derived>& m) {
  return m.allFinite();
}

}  // namespace deeplinear
