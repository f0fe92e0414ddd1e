// The activations the kernels implement (common.h Act), for bias_act and the upfirdn2d epilogue.
#pragma once

#include "common.h"
#include "types.cuh"

namespace sgv {
namespace {

// f(v)
template <typename A> __device__ __forceinline__ A act_fwd(int act, A v, A alpha) {
  return (act == kLrelu && !(v > A(0))) ? v * alpha : v;
}

// f'(v), read off the sign of v or of the forward output u = f(v) (the same for alpha > 0).
template <typename A> __device__ __forceinline__ A act_d1(int act, A u, A alpha) {
  return (act == kLrelu && !(u > A(0))) ? alpha : A(1);
}

}  // namespace
}  // namespace sgv
