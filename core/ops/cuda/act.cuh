// Activation codes and their forward functions, shared by bias_act and the upfirdn2d epilogue.
// Codes as in core/ops/bias_act.py ACTIVATIONS[...].cuda_idx.
#pragma once

#include "types.cuh"

namespace sgv {
namespace {

// SELU constants, as torch.nn.functional.selu.
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr float kSoftplusThreshold = 20.f;  // torch's default: softplus(v) = v above it

enum Act : int { kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5, kElu = 6, kSelu = 7,
                 kSoftplus = 8, kSwish = 9 };

template <typename A> __device__ __forceinline__ A sigmoid(A v) { return A(1) / (A(1) + m_exp(-v)); }

// f(v)
template <typename A> __device__ __forceinline__ A act_fwd(int act, A v, A alpha) {
  switch (act) {
    case kRelu: return v > A(0) ? v : A(0);
    case kLrelu: return v > A(0) ? v : v * alpha;
    case kTanh: return m_tanh(v);
    case kSigmoid: return sigmoid(v);
    case kElu: return v > A(0) ? v : m_expm1(v);
    case kSelu: return v > A(0) ? A(kSeluScale) * v : A(kSeluScale * kSeluAlpha) * m_expm1(v);
    case kSoftplus: return v > A(kSoftplusThreshold) ? v : m_log1p(m_exp(v));
    case kSwish: return sigmoid(v) * v;
    default: return v;
  }
}

}  // namespace
}  // namespace sgv
