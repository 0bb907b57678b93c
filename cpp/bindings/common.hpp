// Shared helpers of the pybind11 bindings (not part of the core).
#pragma once

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "deeplinear/deeplinear.hpp"

#include <limits>
#include <string>

namespace deeplinear_bindings {

namespace py = pybind11;
using deeplinear::Index;

template <class Scalar>
struct Suffix;
template <>
struct Suffix<double> {
  static constexpr const char* value = "64";
};
template <>
struct Suffix<float> {
  static constexpr const char* value = "32";
};

template <class Scalar>
std::string class_name(const char* base) {
  return std::string(base) + Suffix<Scalar>::value;
}

void bind_network(py::module_& m);
void bind_train(py::module_& m);
void bind_train32(py::module_& m);
void bind_runtime(py::module_& m);
void bind_completion(py::module_& m);

}  // namespace deeplinear_bindings
