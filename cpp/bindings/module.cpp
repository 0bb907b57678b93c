// deeplinear._core: the compiled core.  Validation happens first in Python; the C++ checks
// raise std::invalid_argument, which pybind11 turns into ValueError.
#include "common.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "deeplinear compiled core (Eigen); use the deeplinear package, not this module.";
#ifdef DEEPLINEAR_VERSION
  m.attr("__version__") = DEEPLINEAR_VERSION;
#endif
  deeplinear_bindings::bind_runtime(m);
  deeplinear_bindings::bind_network(m);
  deeplinear_bindings::bind_train(m);
  deeplinear_bindings::bind_train32(m);
  deeplinear_bindings::bind_completion(m);
}
