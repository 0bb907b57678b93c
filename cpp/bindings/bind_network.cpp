// deeplinear::Network<Scalar> as _core.Network64 / _core.Network32.
#include "common.hpp"

#include <utility>

namespace deeplinear_bindings {

namespace {

template <class Scalar>
void register_network(py::module_& m) {
  using Net = deeplinear::Network<Scalar>;
  using M = deeplinear::Mat<Scalar>;
  py::class_<Net>(m, class_name<Scalar>("Network").c_str(),
                  "Weights W_1..W_L (W_1 acts first), owned by the core.")
      .def(py::init([](const std::vector<py::array_t<Scalar, 0>>& weights, const std::string& activation) {
             const auto act = deeplinear::parse_activation(activation);
             std::vector<M> w(weights.size());
             for (std::size_t l = 0; l < weights.size(); ++l) {
               const auto& a = weights[l];
               const std::string name = "weights[" + std::to_string(l) + "]";
               deeplinear::require(a.ndim() == 2, name.c_str(), "must be 2-D");
               const auto item = static_cast<py::ssize_t>(sizeof(Scalar));
               deeplinear::require(a.strides(0) % item == 0 && a.strides(1) % item == 0, name.c_str(),
                                   "strides must be multiples of the item size");
               bool finite;
               {
                 py::gil_scoped_release release;
                 finite = deeplinear::copy_checked<Scalar>(w[l], a.data(), a.shape(0), a.shape(1),
                                                           a.strides(0) / item, a.strides(1) / item);
               }
               deeplinear::require(finite, name.c_str(), "contains NaN or Inf");
             }
             return Net(std::move(w), act, typename Net::Checked{});
           }),
           py::arg("weights"), py::arg("activation") = "none",
           "Copies the given weights (arrays of this dtype, any layout and strides) into the core "
           "in one pass that also checks them (ValueError 'weights[i]: contains NaN or Inf'); "
           "activation 'none' or 'relu' (after every hidden layer).")
      .def_static(
          "init",
          [](const std::vector<Index>& dims, const std::string& kind, double scale,
             std::uint64_t seed, const std::string& activation) {
            const auto act = deeplinear::parse_activation(activation);
            deeplinear::InitKind k;
            if (kind == "orthogonal")
              k = deeplinear::InitKind::Orthogonal;
            else if (kind == "gaussian")
              k = deeplinear::InitKind::Gaussian;
            else
              throw std::invalid_argument("init: must be 'orthogonal' or 'gaussian', got '" + kind + "'");
            py::gil_scoped_release release;  // QR of d x d matrices: long for wide layers
            return Net(deeplinear::init_weights<Scalar>(dims, k, scale, seed), act);
          },
          py::arg("dims"), py::arg("init"), py::arg("init_scale"), py::arg("seed"),
          py::arg("activation") = "none")
      .def_property_readonly("activation",
                             [](const Net& n) { return std::string(deeplinear::activation_name(n.activation())); })
      .def_property_readonly("depth", &Net::depth)
      .def_property_readonly("dims", &Net::dims)
      .def(
          "weight",
          [](const Net& n, std::size_t l) -> M {
            if (l >= n.depth()) throw py::index_error("layer index out of range");
            return n.weights()[l];
          },
          py::arg("index"), "A copy of layer index+1 (0-based index).")
      .def(
          "weight_view",
          [](Net& n, std::size_t l) -> Eigen::Ref<const M> {
            if (l >= n.depth()) throw py::index_error("layer index out of range");
            return std::as_const(n).weights()[l];  // reading: the version stays
          },
          py::arg("index"), py::return_value_policy::reference_internal,
          "A read-only view of layer index+1; valid while the network lives, changes as it trains.")
      .def(
          "set_weight",
          [](Net& n, std::size_t l, const Eigen::Ref<const M>& w) {
            if (l >= n.depth()) throw py::index_error("layer index out of range");
            auto& cur = n.weights()[l];
            deeplinear::require(w.rows() == cur.rows() && w.cols() == cur.cols(), "weight",
                                "shape does not match the layer");
            cur = w;
          },
          py::arg("index"), py::arg("weight").noconvert())
      .def("end_to_end", [](const Net& n) {
        py::gil_scoped_release release;
        return n.end_to_end();
      })
      .def("all_finite", &Net::all_finite)
      .def_property_readonly("version", &Net::version,
                             "Changes whenever the weights may have changed (every write access: a "
                             "training step, set_weight, a restore); equal versions, same weights.")
      .def(
          "forward",
          [](const Net& n, const Eigen::Ref<const M>& x) {
            py::gil_scoped_release release;
            return deeplinear::forward<Scalar>(n, x);
          },
          py::arg("X").noconvert(), "The output W_L H_{L-1} on inputs X (d_0 x n, C-contiguous).")
      .def(
          "hidden",
          [](const Net& n, const Eigen::Ref<const M>& x) {
            std::vector<M> h;
            {
              py::gil_scoped_release release;
              deeplinear::forward<Scalar>(n, x, &h);
            }
            return h;
          },
          py::arg("X").noconvert(), "The hidden outputs [H_1, ..., H_{L-1}] on inputs X (d_0 x n).");
}

}  // namespace

void bind_network(py::module_& m) {
  register_network<double>(m);
  register_network<float>(m);
}

}  // namespace deeplinear_bindings
