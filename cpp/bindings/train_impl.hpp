// Trainer bindings shared by the per-dtype translation units bind_train.cpp (float64, the
// optimizer configuration) and bind_train32.cpp (float32): one instantiation per file, so that
// the two compile in parallel.
#pragma once
#include "common.hpp"
#include "trainer_state.hpp"

#include <cstdint>
#include <cstring>

namespace deeplinear_bindings {

namespace {

using deeplinear::Objective;
using deeplinear::OptimizerConfig;
using deeplinear::OptKind;

/// A read-only Eigen map over a NumPy array, without any copy: the array must already be 2-D,
/// C-contiguous and of the core's dtype (the Python layer converts explicitly before).
template <class Scalar>
deeplinear::ConstMatMap<Scalar> map_array(const py::object& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + ": must be a NumPy array");
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<Scalar>()))
    throw py::type_error(std::string(name) + ": dtype must be " +
                         std::string(py::str(py::dtype::of<Scalar>())) + ", got " + std::string(py::str(a.dtype())));
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + ": must be 2-D");
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": must be C-contiguous");
  return deeplinear::ConstMatMap<Scalar>(static_cast<const Scalar*>(a.data()), a.shape(0), a.shape(1));
}

template <class Scalar>
Objective<Scalar> make_objective(const std::string& kind, const py::object& a, const py::object& b,
                                 const std::string& reduction) {
  const auto red = parse_reduction(reduction);
  if (kind == "factorization") return Objective<Scalar>::factorization(map_array<Scalar>(a, "target"), red);
  if (kind == "completion")
    return Objective<Scalar>::completion(map_array<Scalar>(a, "target"), map_array<Scalar>(b, "mask"), red);
  if (kind == "regression")
    return Objective<Scalar>::regression(map_array<Scalar>(a, "X"), map_array<Scalar>(b, "Y"), red);
  if (kind == "classification")
    return Objective<Scalar>::classification(map_array<Scalar>(a, "X"), map_array<Scalar>(b, "Y"), red);
  throw std::invalid_argument("problem: unknown kind '" + kind + "'");
}

py::array reshape(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
  py::array_t<double> a(shape);
  if (!v.empty()) std::copy(v.begin(), v.end(), a.mutable_data());
  return std::move(a);
}

deeplinear::TrackMode parse_track_mode(const std::string& s) {
  if (s == "full") return deeplinear::TrackMode::Full;
  if (s == "incremental") return deeplinear::TrackMode::Incremental;
  if (s == "structured") return deeplinear::TrackMode::Structured;
  if (s == "compressed") return deeplinear::TrackMode::Compressed;
  throw std::invalid_argument("track: must be 'full', 'incremental', 'structured' or 'compressed', got '" + s + "'");
}

template <class Scalar>
py::dict tracking_dict(const deeplinear::Tracker<Scalar>& t, std::size_t depth) {
  const auto n = static_cast<py::ssize_t>(t.steps().size());
  const auto L = static_cast<py::ssize_t>(depth);
  const auto r2 = static_cast<py::ssize_t>(t.rank2());
  py::dict d;
  d["steps"] = py::array_t<long>(t.steps().size(), t.steps().data());
  d["singular_values"] = reshape(t.singular_values(), {n, L, static_cast<py::ssize_t>(t.n_sv())});
  d["angles_right"] = reshape(t.angles_right(), {n, L, r2});
  d["angles_left"] = reshape(t.angles_left(), {n, L, r2});
  d["angles_align"] = reshape(t.angles_align(), {n, std::max<py::ssize_t>(L - 1, 0), r2});
  d["fallbacks"] = t.fallbacks();
  d["iterations"] = t.iterations();
  d["max_residual"] = t.max_residual();
  d["verify_error"] = t.verify_error();
  return d;
}

// Tracking state <-> Python (checkpoints): one converter per field type of TrackerState, so a
// field added there (and to Tracker::state_fields) needs no change here, unless of a new type.  Vectors become 1-D arrays,
// the warm starts lists of 2-D arrays, the generator a uint64 array of 6 (its four words, the
// bits of the Box–Muller spare, whether the spare is pending): every value exact.
py::object state_to_py(const std::vector<long>& v) { return py::array_t<long>(v.size(), v.data()); }
py::object state_to_py(const std::vector<double>& v) { return py::array_t<double>(v.size(), v.data()); }
py::object state_to_py(long v) { return py::int_(v); }
py::object state_to_py(double v) { return py::float_(v); }
py::object state_to_py(const std::vector<deeplinear::MatD>& v) {
  py::list out;
  for (const auto& m : v) out.append(py::cast(m));
  return std::move(out);
}
py::object state_to_py(const deeplinear::Rng::State& s) {
  std::uint64_t spare = 0;
  std::memcpy(&spare, &s.spare, sizeof spare);
  const std::uint64_t words[6] = {s.words[0], s.words[1], s.words[2], s.words[3], spare, s.has_spare ? 1u : 0u};
  return py::array_t<std::uint64_t>(6, words);
}

[[noreturn]] void bad_state(const char* name, const std::string& what) {
  throw std::invalid_argument(std::string("checkpoint: tracking state '") + name + "' " + what);
}
template <class T>
std::vector<T> vector_from_py(const py::handle& o, const char* name) {
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(o);
  if (!a || a.ndim() != 1) bad_state(name, "must be a 1-D array");
  return std::vector<T>(a.data(), a.data() + a.size());
}
void state_from_py(const py::handle& o, const char* name, std::vector<long>& v) { v = vector_from_py<long>(o, name); }
void state_from_py(const py::handle& o, const char* name, std::vector<double>& v) { v = vector_from_py<double>(o, name); }
template <class T>
void scalar_from_py(const py::handle& o, const char* name, T& v) {
  try {
    v = py::cast<T>(o);
  } catch (const py::cast_error&) {
    bad_state(name, "must be a number");
  }
}
void state_from_py(const py::handle& o, const char* name, long& v) { scalar_from_py(o, name, v); }
void state_from_py(const py::handle& o, const char* name, double& v) { scalar_from_py(o, name, v); }
void state_from_py(const py::handle& o, const char* name, std::vector<deeplinear::MatD>& v) {
  try {
    v = py::cast<std::vector<deeplinear::MatD>>(o);
  } catch (const py::cast_error&) {
    bad_state(name, "must be a list of 2-D float64 arrays");
  }
}
void state_from_py(const py::handle& o, const char* name, deeplinear::Rng::State& s) {
  const auto w = vector_from_py<std::uint64_t>(o, name);
  if (w.size() != 6 || w[5] > 1) bad_state(name, "must be 6 words (xoshiro256** state, spare, flag)");
  for (int i = 0; i < 4; ++i) s.words[i] = w[i];
  std::memcpy(&s.spare, &w[4], sizeof s.spare);
  s.has_spare = w[5] == 1;
}

template <class Scalar>
void register_train(py::module_& m) {
  using Net = deeplinear::Network<Scalar>;
  using Trainer = deeplinear::Trainer<Scalar>;
  using M = deeplinear::Mat<Scalar>;

  m.def(
      class_name<Scalar>("loss_and_gradients").c_str(),
      [](Net& net, const std::string& kind, const py::object& a, const py::object& b,
         const std::string& reduction, double weight_decay) {
        auto obj = make_objective<Scalar>(kind, a, b, reduction);
        std::vector<M> grads(net.depth());
        deeplinear::LossValue v;
        {
          py::gil_scoped_release release;
          deeplinear::Engine<Scalar> engine(net, obj, weight_decay);
          v = engine.evaluate(net);
          engine.backward(net, [&](std::size_t l, M&, M& g) { grads[l - 1] = g; });
        }
        return py::make_tuple(v.train, v.test, grads);
      },
      py::arg("network"), py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("reduction"),
      py::arg("weight_decay"),
      "(train loss, test loss, [grad_1, ..., grad_L]) at the network's current weights.");

  py::class_<Trainer>(m, class_name<Scalar>("Trainer").c_str(),
                      "Training loop over a network (updated in place) and a problem.")
      .def(py::init([](Net& net, const std::string& kind, const py::object& a, const py::object& b,
                       const std::string& reduction, const OptimizerConfig& cfg, long record_every,
                       double tol, long expected_steps, double loss_offset, double c,
                       const py::object& left, const py::object& right) {
             deeplinear::TrainOptions opts;
             opts.record_every = record_every;
             opts.tol = tol;
             opts.expected_steps = expected_steps;
             opts.loss_offset = loss_offset;
             auto obj = make_objective<Scalar>(kind, a, b, reduction);
             if (!std::isnan(c)) obj.set_c(c);
             if (!left.is_none() || !right.is_none())
               obj.set_outer_maps(map_array<Scalar>(left, "U"), map_array<Scalar>(right, "V"));
             return new Trainer(net, std::move(obj), cfg, opts);
           }),
           py::arg("network"), py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("reduction"),
           py::arg("optimizer"), py::arg("record_every") = 1, py::arg("tol") = -1.0,
           py::arg("expected_steps") = 0, py::arg("loss_offset") = 0.0,
           py::arg("c") = std::numeric_limits<double>::quiet_NaN(), py::arg("left") = py::none(),
           py::arg("right") = py::none(),
           // the trainer refers to the network and maps the problem's arrays: keep them alive
           py::keep_alive<1, 2>(), py::keep_alive<1, 4>(), py::keep_alive<1, 5>(),
           py::keep_alive<1, 13>(), py::keep_alive<1, 14>())
      .def(
          "reset",
          [](Trainer& t, const OptimizerConfig& cfg, long record_every, double tol, long expected_steps,
             double loss_offset) {
            deeplinear::TrainOptions opts;
            opts.record_every = record_every;
            opts.tol = tol;
            opts.expected_steps = expected_steps;
            opts.loss_offset = loss_offset;
            t.reset(cfg, opts);
          },
          py::arg("optimizer"), py::arg("record_every") = 1, py::arg("tol") = -1.0,
          py::arg("expected_steps") = 0, py::arg("loss_offset") = 0.0,
          "A fresh run on the same network and problem (the next training call): optimizer state, "
          "step, history, tracker as new; the workspace and the forward pass of unchanged weights kept.")
      // Many steps of BLAS work: release the GIL so other Python threads run meanwhile.
      .def(
          "run", [](Trainer& t, long n) { return deeplinear::status_name(t.run(n)); },
          py::arg("steps"), py::call_guard<py::gil_scoped_release>())
      .def(
          "finish", [](Trainer& t) { return deeplinear::status_name(t.finish()); },
          py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("step", &Trainer::step)
      .def_property_readonly("status", [](const Trainer& t) { return deeplinear::status_name(t.status()); })
      .def_property_readonly("last_loss", [](const Trainer& t) { return t.last_loss().train; })
      .def("set_bulk", &Trainer::set_bulk, py::arg("rho"), py::arg("count"), py::arg("c"),
           "Carries the bulk value rho of a compressed network (count = d - 2r directions, the wide "
           "c): its loss terms are added to the losses, it advances with every update.")
      .def_property_readonly("bulk_rho", &Trainer::bulk_rho)
      .def(
          "bulk_state",
          [](const Trainer& t) {
            const auto s = t.bulk_state();
            return py::make_tuple(s.rho, s.b);
          },
          "(rho, b): the bulk value and heavy ball's trace of it (checkpoints).")
      .def(
          "restore_bulk",
          [](Trainer& t, double rho, double b) { t.restore_bulk(deeplinear::BulkValue::State{rho, b}); },
          py::arg("rho"), py::arg("b"), "Writes back a bulk_state() (after set_bulk).")
      .def("history", [](const Trainer& t) { return history_dict(t.history()); })
      .def(
          "set_tracking",
          [](Trainer& t, const Net& net, const std::string& mode, long every, long k, double tol,
             int max_iter, long verify_every, std::vector<deeplinear::MatD> ref_u,
             std::vector<deeplinear::MatD> ref_v, std::vector<double> rho, bool top_only, long bulk_count,
             double bulk_rho) {
            deeplinear::TrackOptions o;
            o.mode = parse_track_mode(mode);
            o.every = every;
            o.k = k;
            o.tol = tol;
            o.max_iter = max_iter;
            o.verify_every = verify_every;
            o.top_only = top_only;
            o.bulk_count = bulk_count;
            o.bulk_rho = bulk_rho;
            t.set_tracker(std::make_unique<deeplinear::Tracker<Scalar>>(net.dims(), o, std::move(ref_u),
                                                                        std::move(ref_v), std::move(rho)));
          },
          py::arg("network"), py::arg("mode"), py::arg("every"), py::arg("k"), py::arg("tol"),
          py::arg("max_iter"), py::arg("verify_every"), py::arg("ref_u"), py::arg("ref_v"), py::arg("rho"),
          py::arg("top_only") = false, py::arg("bulk_count") = 0, py::arg("bulk_rho") = 0.0)
      // Checkpoints: the optimizer state (buffers are copied out / in) and the progress.
      .def("optimizer_state", [](Trainer& t) { return optimizer_state(t); })
      .def("restore", &restore_trainer<Trainer, M>,
          py::arg("step"), py::arg("count"), py::arg("trace"), py::arg("first"), py::arg("second"),
          py::arg("steps"), py::arg("train_loss"), py::arg("test_loss"))
      .def("tracking", [](const Trainer& t, std::size_t depth) -> py::object {
        if (!t.tracker()) return py::none();
        return tracking_dict(*t.tracker(), depth);
      })
      // Checkpoints of a tracked run: the tracker's complete state (deeplinear::TrackerState).
      .def(
          "tracking_state",
          [](const Trainer& t) -> py::object {
            if (!t.tracker()) return py::none();
            const deeplinear::TrackerState s = t.tracker()->state();
            py::dict d;
            deeplinear::Tracker<Scalar>::state_fields(
                [&](const char* name, auto, auto field) { d[name] = state_to_py(s.*field); });
            return std::move(d);
          },
          "The tracker's complete state (flat arrays, counters, warm starts, generator), or None "
          "without tracking.")
      .def(
          "restore_tracking",
          [](Trainer& t, const py::dict& d) {
            auto* tracker = t.tracker();
            if (!tracker) throw std::invalid_argument("checkpoint: this run has no tracking to restore (set_tracking first)");
            deeplinear::TrackerState s;
            deeplinear::Tracker<Scalar>::state_fields([&](const char* name, auto, auto field) {
              if (!d.contains(name)) bad_state(name, "is missing");
              state_from_py(d[name], name, s.*field);
            });
            tracker->restore(s);
          },
          py::arg("state"),
          "Writes back a state from tracking_state() (of a tracker set up with the same settings).");
}

}  // namespace

}  // namespace deeplinear_bindings
