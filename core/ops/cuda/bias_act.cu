// Fused bias + activation + gain + clamp, and its gradient.
//
// One elementwise kernel walks the tensor in memory order (any dense layout: NCHW or channels-last),
// each thread a run of VEC consecutive elements loaded with one 16-byte access. The bias channel is
// found with one division per run and then advanced incrementally, so the integer work stays well
// below the memory traffic. Maths is done in float (double for float64) and rounded once.

#include <algorithm>

#include "act.cuh"
#include "common.h"
#include "types.cuh"

namespace sgv {
namespace {

// alpha, gain and clamp arrive already converted to A (once per thread, not per element).
template <typename A>
__device__ __forceinline__ A element(const BiasActParams& p, A alpha, A gain, A clamp, A x, A bias, A yr) {
  if (p.mode == 0) {
    A y = act_fwd(p.act, x + bias, alpha) * gain;
    if (clamp >= A(0)) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
    return y;
  }
  // mode 1: the gradient, zero where the forward output was clamped; act' read off the output's sign
  if (clamp >= A(0) && !(m_abs(yr) < clamp)) return A(0);
  return x * gain * act_d1(p.act, yr, alpha);
}

template <typename T, int VEC> struct alignas(sizeof(T) * VEC) Pack { T v[VEC]; };

// Load VEC elements starting at i (all of them when full, else only those below numel).
template <typename T, int VEC, typename I>
__device__ __forceinline__ void load(const void* ptr, I i, bool full, I numel,
                                     typename Acc<T>::type (&out)[VEC]) {
  const T* p = static_cast<const T*>(ptr);
  if (full) {
    Pack<T, VEC> pk = *reinterpret_cast<const Pack<T, VEC>*>(p + i);
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = to_acc(pk.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = (i + k < numel) ? to_acc(p[i + k]) : 0;
  }
}

template <typename T, int VEC, typename I>
__global__ void bias_act_kernel(BiasActParams p) {
  using A = typename Acc<T>::type;
  const I numel = static_cast<I>(p.numel);
  const I step_b = static_cast<I>(p.step_b), size_b = static_cast<I>(p.size_b);
  const T* b = static_cast<const T*>(p.b);
  const T* scale = static_cast<const T*>(p.scale);
  const T* out_scale = static_cast<const T*>(p.out_scale);
  const I step_n = static_cast<I>(p.step_n);
  const I nruns = (numel + VEC - 1) / VEC;
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  for (I run = I(blockIdx.x) * blockDim.x + threadIdx.x; run < nruns; run += I(gridDim.x) * blockDim.x) {
    const I i0 = run * VEC;
    const bool full = i0 + VEC <= numel;
    A x[VEC], yr[VEC], out[VEC];
    load<T, VEC, I>(p.x, i0, full, numel, x);
#pragma unroll
    for (int k = 0; k < VEC; ++k) yr[k] = A(0);
    if (p.yref) load<T, VEC, I>(p.yref, i0, full, numel, yr);
    const I q = i0 / step_b;
    I r = i0 - q * step_b;  // position inside the current bias channel's stretch
    I c = q % size_b;       // bias channel of element i0
    const bool scaled = scale || out_scale;
    I n = 0, rn = 0;        // sample of element i0 and the position inside it (scales only)
    if (scaled) { n = i0 / step_n; rn = i0 - n * step_n; }
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      if (!full && i0 + k >= numel) break;  // past the end the sample index (scales) leaves the tensor
      const A bias = b ? to_acc(b[c]) : A(0);
      if (scale) x[k] *= to_acc(scale[n * size_b + c]);
      out[k] = element<A>(p, alpha, gain, clamp, x[k], bias, yr[k]);
      if (out_scale) out[k] *= to_acc(out_scale[n * size_b + c]);
      if (++r == step_b) { r = 0; if (++c == size_b) c = 0; }
      if (scaled && ++rn == step_n) { rn = 0; ++n; }
    }
    T* y = static_cast<T*>(p.y);
    if (full) {
      Pack<T, VEC> pk;
#pragma unroll
      for (int k = 0; k < VEC; ++k) pk.v[k] = from_acc<T>(out[k]);
      *reinterpret_cast<Pack<T, VEC>*>(y + i0) = pk;
    } else {
      for (int k = 0; k < VEC && i0 + k < numel; ++k) y[i0 + k] = from_acc<T>(out[k]);
    }
  }
}

bool aligned16(const void* ptr) { return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T>
cudaError_t launch_typed(const BiasActParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kThreads = 256;
  const bool vec = aligned16(p.x) && aligned16(p.yref) && aligned16(p.y);
  const bool small = p.numel + kVec < (int64_t(1) << 31);
  const int64_t runs = vec ? (p.numel + kVec - 1) / kVec : p.numel;
  const int blocks = static_cast<int>(std::min<int64_t>((runs + kThreads - 1) / kThreads, 65536));
  void (*kernel)(BiasActParams) = vec ? (small ? bias_act_kernel<T, kVec, uint32_t> : bias_act_kernel<T, kVec, int64_t>)
                                      : (small ? bias_act_kernel<T, 1, uint32_t> : bias_act_kernel<T, 1, int64_t>);
  SGV_LAUNCH(kernel, blocks, kThreads, 0, stream, p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t bias_act_launch(const BiasActParams& p, int dtype, cudaStream_t stream) {
  if (p.numel == 0) return cudaSuccess;
  switch (dtype) {
    case kFloat32: return launch_typed<float>(p, stream);
    case kFloat16: return launch_typed<__half>(p, stream);
    case kBFloat16: return launch_typed<__nv_bfloat16>(p, stream);
    case kFloat64: return launch_typed<double>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace sgv
