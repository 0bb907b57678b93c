// Checkpoint helpers shared by every core trainer binding (wide Trainer, CompletionTrainer):
// the optimizer state copied out / in, and the progress (step counter, history) restored.
#pragma once
#include "common.hpp"

namespace deeplinear_bindings {

/// (count, [trace_l], [first_l], [second_l]) over the trainer's optimizer layers 1 .. depth().
template <class Trainer>
py::tuple optimizer_state(Trainer& t) {
  auto& o = t.optimizer();
  using M = std::decay_t<decltype(o.trace(1))>;
  py::list trace, first, second;
  for (std::size_t l = 1; l <= t.depth(); ++l) {
    trace.append(M(o.trace(l)));
    first.append(M(o.first_moment(l)));
    second.append(M(o.second_moment(l)));
  }
  return py::make_tuple(o.count(), trace, first, second);
}

/// Writes back an optimizer state of optimizer_state() and the progress of a checkpoint.
template <class Trainer, class M>
void restore_trainer(Trainer& t, long step, long count, const std::vector<M>& trace, const std::vector<M>& first,
                     const std::vector<M>& second, std::vector<long> steps, std::vector<double> train,
                     std::vector<double> test) {
  auto& o = t.optimizer();
  deeplinear::require(trace.size() == t.depth() && first.size() == t.depth() && second.size() == t.depth(),
                      "checkpoint", "optimizer state has the wrong number of layers");
  for (std::size_t l = 1; l <= t.depth(); ++l) {
    deeplinear::require(trace[l - 1].rows() == o.trace(l).rows() && trace[l - 1].cols() == o.trace(l).cols() &&
                            first[l - 1].rows() == o.first_moment(l).rows() &&
                            first[l - 1].cols() == o.first_moment(l).cols() &&
                            second[l - 1].rows() == o.second_moment(l).rows() &&
                            second[l - 1].cols() == o.second_moment(l).cols(),
                        "checkpoint", "optimizer state shapes do not match");
    o.trace(l) = trace[l - 1];
    o.first_moment(l) = first[l - 1];
    o.second_moment(l) = second[l - 1];
  }
  o.set_count(count);
  deeplinear::History h{std::move(steps), std::move(train), std::move(test)};
  t.restore(step, std::move(h));
}

inline py::dict history_dict(const deeplinear::History& h) {
  py::dict d;
  d["steps"] = py::array_t<long>(h.steps.size(), h.steps.data());
  d["train_loss"] = py::array_t<double>(h.train_loss.size(), h.train_loss.data());
  d["test_loss"] = py::array_t<double>(h.test_loss.size(), h.test_loss.data());
  return d;
}

}  // namespace deeplinear_bindings
