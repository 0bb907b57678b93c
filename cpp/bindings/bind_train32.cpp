// _core.Trainer32 / loss_and_gradients32 (see train_impl.hpp).
#include "train_impl.hpp"

namespace deeplinear_bindings {

void bind_train32(py::module_& m) { register_train<float>(m); }

}  // namespace deeplinear_bindings
