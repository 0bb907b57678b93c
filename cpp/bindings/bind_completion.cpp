// Compressed matrix completion on observed entries: _core.CompletionFactors64 (the factors
// U, W~_1..W~_L, V of a model), _core.CompletionTrainer64 (its training loop, the interface of
// Trainer64) and _core.sparse_product64 (S x or S^T x for the spectral initialization).
// Entries arrive in the core's layout (python/deeplinear/problems.py builds it once): row
// offsets int64 (rows + 1), column indices int32, values float64, sorted by row.
#include "common.hpp"
#include "deeplinear/completion.hpp"
#include "trainer_state.hpp"

#include <cstdint>
#include <optional>

namespace deeplinear_bindings {

namespace {

using deeplinear::CompletionFactors;
using deeplinear::CompletionTrainer;
using deeplinear::SparseEntries;
using MatD = deeplinear::Mat<double>;

template <class T>
const T* vector_data(const py::object& obj, const char* name, py::ssize_t size) {
  if (!py::isinstance<py::array_t<T>>(obj)) throw py::type_error(std::string(name) + ": must be a NumPy array of the core's index/value type");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": dtype must be " + std::string(py::str(py::dtype::of<T>())));
  if (a.ndim() != 1 || !(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": must be 1-D and contiguous");
  if (size >= 0 && a.shape(0) != size) throw std::invalid_argument(std::string(name) + ": has the wrong length");
  return static_cast<const T*>(a.data());
}

/// A view of entries = (row_ptr, col, val) for a rows x cols matrix (arrays kept alive by the caller).
SparseEntries entries_view(const py::tuple& t, Index rows, Index cols, const char* name) {
  if (t.size() != 3) throw std::invalid_argument(std::string(name) + ": must be (row_ptr, col, val)");
  SparseEntries s;
  s.rows = rows;
  s.cols = cols;
  s.row_ptr = vector_data<std::int64_t>(t[0], name, rows + 1);
  const auto n = static_cast<py::ssize_t>(s.row_ptr[rows]);
  s.col = vector_data<std::int32_t>(t[1], name, n);
  s.val = vector_data<double>(t[2], name, n);
  s.validate(name);
  return s;
}

}  // namespace

void bind_completion(py::module_& m) {
  py::class_<CompletionFactors>(m, "CompletionFactors64",
                                "Factors of a compressed completion model U W~_L ... W~_1 V^T (float64, owned).")
      .def(py::init([](MatD u, std::vector<MatD> layers, MatD v) {
             return new CompletionFactors(std::move(u), std::move(layers), std::move(v));
           }),
           py::arg("U"), py::arg("layers"), py::arg("V"))
      .def_property_readonly("depth", &CompletionFactors::depth)
      .def_property_readonly("count", [](const CompletionFactors& f) { return f.f.size(); })
      .def(
          "get", [](const CompletionFactors& f, std::size_t i) { return MatD(f.f.at(i)); }, py::arg("index"),
          "A copy of factor i in the optimizer's order: 0 = V, 1..L = W~_1..W~_L, L+1 = U.")
      .def(
          "set",
          [](CompletionFactors& f, std::size_t i, const Eigen::Ref<const MatD>& a) {
            auto& w = f.f.at(i);
            deeplinear::require(a.rows() == w.rows() && a.cols() == w.cols(), "weights", "shape does not match");
            w = a;
          },
          py::arg("index"), py::arg("value"));

  py::class_<CompletionTrainer>(m, "CompletionTrainer64",
                                "Training loop of compressed completion (the interface of Trainer64).")
      .def(py::init([](CompletionFactors& fac, const py::tuple& train, const py::object& test, Index rows, Index cols,
                       const deeplinear::OptimizerConfig& cfg, double c, double outer_scale, long record_every,
                       double tol, long expected_steps, int threads, Index column_block) {
             std::optional<SparseEntries> te;
             SparseEntries tr = entries_view(train, rows, cols, "entries");
             if (!test.is_none()) te = entries_view(py::reinterpret_borrow<py::tuple>(test), rows, cols, "test");
             deeplinear::TrainOptions opts;
             opts.record_every = record_every;
             opts.tol = tol;
             opts.expected_steps = expected_steps;
             deeplinear::CompletionOptions co;
             co.c = c;
             co.outer_scale = outer_scale;
             co.threads = threads;
             co.column_block = column_block;
             return new CompletionTrainer(fac, tr, te, cfg, co, opts);
           }),
           py::arg("factors"), py::arg("entries"), py::arg("test"), py::arg("rows"), py::arg("cols"),
           py::arg("optimizer"), py::arg("c"), py::arg("outer_lr_scale"), py::arg("record_every") = 1,
           py::arg("tol") = -1.0, py::arg("expected_steps") = 0, py::arg("threads") = 1, py::arg("column_block") = 0,
           // the trainer refers to the factors and maps the entries' arrays: keep them alive
           py::keep_alive<1, 2>(), py::keep_alive<1, 3>(), py::keep_alive<1, 4>())
      // Many steps over the entries: release the GIL so other Python threads run meanwhile.
      .def(
          "run", [](CompletionTrainer& t, long n) { return deeplinear::status_name(t.run(n)); }, py::arg("steps"),
          py::call_guard<py::gil_scoped_release>())
      .def(
          "finish", [](CompletionTrainer& t) { return deeplinear::status_name(t.finish()); },
          py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("step", &CompletionTrainer::step)
      .def_property_readonly("status", [](const CompletionTrainer& t) { return deeplinear::status_name(t.status()); })
      .def_property_readonly("last_loss", [](const CompletionTrainer& t) { return t.last_loss().train; })
      .def_property_readonly("threads", &CompletionTrainer::threads)
      .def_property_readonly("column_block", &CompletionTrainer::column_block,
                             "Column block width of the pass over the entries (sparse.hpp).")
      .def("history", [](const CompletionTrainer& t) { return history_dict(t.history()); })
      .def("test_loss_now", &CompletionTrainer::test_loss_now, py::call_guard<py::gil_scoped_release>(),
           "The test loss at the current factors (NaN without test entries).")
      .def("optimizer_state", [](CompletionTrainer& t) { return optimizer_state(t); })
      .def("restore", &restore_trainer<CompletionTrainer, MatD>, py::arg("step"), py::arg("count"), py::arg("trace"),
           py::arg("first"), py::arg("second"), py::arg("steps"), py::arg("train_loss"), py::arg("test_loss"));

  m.def(
      "sparse_product64",
      [](const py::tuple& entries, Index rows, Index cols, const Eigen::Ref<const MatD>& x, bool transpose,
         int threads) {
        const SparseEntries s = entries_view(entries, rows, cols, "entries");
        deeplinear::require(x.rows() == (transpose ? rows : cols), "x", "has the wrong number of rows");
        MatD xc = x;
        MatD y(transpose ? cols : rows, x.cols());
        {
          py::gil_scoped_release release;
          deeplinear::sparse_product(s, xc.data(), xc.cols(), transpose, y.data(), threads);
        }
        return y;
      },
      py::arg("entries"), py::arg("rows"), py::arg("cols"), py::arg("x"), py::arg("transpose"), py::arg("threads") = 1,
      "S x (or S^T x) for the sparse matrix S of the entries (row_ptr, col, val), threads over rows.");
}

}  // namespace deeplinear_bindings
