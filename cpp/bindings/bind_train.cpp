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
  m.def(
      "rho_schedule",
      [](double init_scale, double lr, std::size_t depth, long steps, double weight_decay, double c,
         double momentum, bool nesterov) {
        std::vector<double> out;
        {
          py::gil_scoped_release release;
          out = deeplinear::rho_schedule(init_scale, lr, depth, steps, weight_decay, c, momentum, nesterov);
        }
        return py::array_t<double>(out.size(), out.data());
      },
      py::arg("init_scale"), py::arg("lr"), py::arg("depth"), py::arg("steps"), py::arg("weight_decay"),
      py::arg("c"), py::arg("momentum"), py::arg("nesterov"),
      "rho(t), t = 0..steps: the bulk value's recursion (deeplinear::BulkValue, as in training).");
  m.def(
      "learning_counts",
      [](const deeplinear::VecD& s, std::vector<Index> count, Index rank2, double tie_tol) {
        return deeplinear::learning_counts(s, count, rank2, tie_tol);
      },
      py::arg("values"), py::arg("count"), py::arg("rank2"), py::arg("tie_tol") = 1e-10,
      "How many copies of each singular value form the learning subspace (the rank2 farthest "
      "from the median in s^2), or [] when not identifiable (deeplinear::learning_counts).");
}

}  // namespace deeplinear_bindings
