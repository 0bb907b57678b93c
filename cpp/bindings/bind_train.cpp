// Objectives, gradients and the training loop: the optimizer configuration and
// _core.Trainer64 / loss_and_gradients64 (float32 in bind_train32.cpp).
#include "train_impl.hpp"

namespace deeplinear_bindings {

void bind_train(py::module_& m) {
  py::enum_<OptKind>(m, "OptKind")
      .value("GD", OptKind::GD)
      .value("Adam", OptKind::Adam)
      .value("RMSProp", OptKind::RMSProp);
  py::class_<OptimizerConfig>(m, "OptimizerConfig")
      .def(py::init<>())
      .def_readwrite("kind", &OptimizerConfig::kind)
      .def_readwrite("lr", &OptimizerConfig::lr)
      .def_readwrite("momentum", &OptimizerConfig::momentum)
      .def_readwrite("nesterov", &OptimizerConfig::nesterov)
      .def_readwrite("weight_decay", &OptimizerConfig::weight_decay)
      .def_readwrite("b1", &OptimizerConfig::b1)
      .def_readwrite("b2", &OptimizerConfig::b2)
      .def_readwrite("eps", &OptimizerConfig::eps)
      .def_readwrite("eps_root", &OptimizerConfig::eps_root)
      .def_readwrite("decay", &OptimizerConfig::decay)
      .def_readwrite("initial_scale", &OptimizerConfig::initial_scale)
      .def_readwrite("centered", &OptimizerConfig::centered)
      .def("validate", &OptimizerConfig::validate);
  register_train<double>(m);
}

}  // namespace deeplinear_bindings
