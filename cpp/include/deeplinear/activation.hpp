// Activations of the hidden layers (MATH.md §5): identity (the deep linear network) or ReLU.
//
// A ReLU network computes H_0 = X, H_l = relu(W_l H_{l-1}) for l = 1..L-1 and the output
// W_L H_{L-1} (never an activation on the output).  Its backward sweep is the linear one with
// the sweep masked by the activation pattern:
//   S_L = R,  S_{l-1} = (W_l^T S_l) (.) 1[W_{l-1} H_{l-2} > 0],  grad_l = S_l H_{l-1}^T.
// The pattern needs no buffer of its own: relu(z) > 0 exactly when z > 0, so it is read from the
// hidden output H_{l-1} that the forward pass keeps anyway (the derivative at z = 0 is taken as
// 0, PyTorch's convention).
#pragma once

#include "deeplinear/types.hpp"

#include <string>

namespace deeplinear {

enum class Activation { Identity, ReLU };

inline Activation parse_activation(const std::string& s) {
  if (s == "none" || s == "identity") return Activation::Identity;
  if (s == "relu") return Activation::ReLU;
  throw std::invalid_argument("activation: must be 'none' or 'relu', got '" + s + "'");
}

inline const char* activation_name(Activation a) { return a == Activation::ReLU ? "relu" : "none"; }

/// h <- relu(h) in place.  NaN stays NaN (x < 0 is false for NaN), so a diverging run still
/// shows a non-finite loss.
template <class Scalar>
void relu_inplace(Mat<Scalar>& h) {
  Scalar* p = h.data();
  const Index n = h.size();
#pragma omp simd
  for (Index i = 0; i < n; ++i) p[i] = p[i] < Scalar(0) ? Scalar(0) : p[i];
}

/// s <- s (.) 1[h > 0]: the backward mask of a ReLU layer from its output h (same shape).
template <class Scalar>
void relu_mask(Mat<Scalar>& s, const Mat<Scalar>& h) {
  require(s.rows() == h.rows() && s.cols() == h.cols(), "relu_mask", "shapes do not match");
  Scalar* sp = s.data();
  const Scalar* hp = h.data();
  const Index n = s.size();
#pragma omp simd
  for (Index i = 0; i < n; ++i) sp[i] = hp[i] > Scalar(0) ? sp[i] : Scalar(0);
}

}  // namespace deeplinear
