// Fused bias + activation + gain + clamp, and its first- and second-order gradients.
//
// One elementwise kernel walks the tensor in memory order (any dense layout: NCHW or channels-last),
// each thread a run of VEC consecutive elements loaded with one 16-byte access per tensor. The bias
// channel is found with one division per run and then advanced incrementally, so the integer work stays
// well below the memory traffic. Maths is done in float (double for float64) and rounded once.

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "act.cuh"
#include "common.h"
#include "types.cuh"

namespace sgv {
namespace {

// f'(v)
template <typename A> __device__ __forceinline__ A act_d1(int act, A v, A alpha) {
  switch (act) {
    case kRelu: return v > A(0) ? A(1) : A(0);
    case kLrelu: return v > A(0) ? A(1) : alpha;
    case kTanh: { A t = m_tanh(v); return A(1) - t * t; }
    case kSigmoid: { A s = sigmoid(v); return s * (A(1) - s); }
    case kElu: return v > A(0) ? A(1) : m_exp(v);
    case kSelu: return v > A(0) ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * m_exp(v);
    case kSoftplus: return v > A(kSoftplusThreshold) ? A(1) : sigmoid(v);
    case kSwish: { A s = sigmoid(v); return s + v * s * (A(1) - s); }
    default: return A(1);
  }
}

// f'(v) expressed through u = f(v) (the forward output divided by the gain), for the activations
// whose gradient keeps the output rather than the input (cuda_ref == "y").
template <typename A> __device__ __forceinline__ A act_d1_from_y(int act, A u, A alpha) {
  switch (act) {
    case kRelu: return u > A(0) ? A(1) : A(0);
    case kLrelu: return u > A(0) ? A(1) : alpha;
    case kTanh: return A(1) - u * u;
    case kSigmoid: return u * (A(1) - u);
    case kElu: return u > A(0) ? A(1) : u + A(1);
    case kSelu: return u > A(0) ? A(kSeluScale) : u + A(kSeluScale * kSeluAlpha);
    case kSoftplus: return A(1) - m_exp(-u);
    default: return A(1);
  }
}

// f''(v)
template <typename A> __device__ __forceinline__ A act_d2(int act, A v) {
  switch (act) {
    case kTanh: { A t = m_tanh(v); return A(-2) * t * (A(1) - t * t); }
    case kSigmoid: { A s = sigmoid(v); return s * (A(1) - s) * (A(1) - A(2) * s); }
    case kElu: return v > A(0) ? A(0) : m_exp(v);
    case kSelu: return v > A(0) ? A(0) : A(kSeluScale * kSeluAlpha) * m_exp(v);
    case kSoftplus: { if (v > A(kSoftplusThreshold)) return A(0); A s = sigmoid(v); return s * (A(1) - s); }
    case kSwish: { A s = sigmoid(v); return s * (A(1) - s) * (A(2) + v * (A(1) - A(2) * s)); }
    default: return A(0);  // piecewise linear: zero almost everywhere
  }
}

// alpha, gain and clamp arrive already converted to A (once per thread, not per element).
template <typename A>
__device__ __forceinline__ A element(const BiasActParams& p, A alpha, A gain, A clamp, A x, A bias, A xr, A yr,
                                     A dr) {
  if (p.mode == 0) {
    A y = act_fwd(p.act, x + bias, alpha) * gain;
    if (clamp >= A(0)) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
    return y;
  }
  bool pass = true;  // false where the forward output was clamped (the gradient is zero there)
  if (clamp >= A(0)) {
    if (p.yref) pass = m_abs(yr) < clamp;
    else pass = m_abs(act_fwd(p.act, xr + bias, alpha) * gain) <= clamp;  // exact pre-clamp test
  }
  if (!pass) return A(0);
  if (p.mode == 1) {
    A d;
    if (p.xref) d = act_d1(p.act, xr + bias, alpha);
    else d = act_d1_from_y(p.act, gain != A(0) ? yr / gain : A(0), alpha);
    return x * gain * d;
  }
  return x * dr * gain * act_d2(p.act, xr + bias);
}

// y[i0 .. i0 + count) of the general kernel from the loaded runs (x and the reference tensors).
template <typename T, int VEC, typename I>
__device__ __forceinline__ void general_run(const BiasActParams& p, I i0, int count,
                                            typename Acc<T>::type (&x)[VEC], const typename Acc<T>::type (&xr)[VEC],
                                            const typename Acc<T>::type (&yr)[VEC],
                                            const typename Acc<T>::type (&dr)[VEC]) {
  using A = typename Acc<T>::type;
  const I step_b = static_cast<I>(p.step_b), size_b = static_cast<I>(p.size_b), step_n = static_cast<I>(p.step_n);
  const T* b = static_cast<const T*>(p.b);
  const T* scale = static_cast<const T*>(p.scale);
  const T* out_scale = static_cast<const T*>(p.out_scale);
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  const I q = i0 / step_b;
  I r = i0 - q * step_b;  // position inside the current bias channel's stretch
  I c = q % size_b;       // bias channel of element i0
  const bool scaled = scale || out_scale;
  I n = 0, rn = 0;        // sample of element i0 and the position inside it (scales only)
  if (scaled) { n = i0 / step_n; rn = i0 - n * step_n; }
  Pack<T, VEC> pk;
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    if (k >= count) break;  // the partial run: past its end the sample index (scales) leaves the tensor
    const A bias = b ? to_acc(b[c]) : A(0);
    if (scale) x[k] *= to_acc(scale[n * size_b + c]);
    A out = element<A>(p, alpha, gain, clamp, x[k], bias, xr[k], yr[k], dr[k]);
    if (out_scale) out *= to_acc(out_scale[n * size_b + c]);
    pk.v[k] = from_acc<T>(out);
    if (++r == step_b) { r = 0; if (++c == size_b) c = 0; }
    if (scaled && ++rn == step_n) { rn = 0; ++n; }
  }
  T* y = static_cast<T*>(p.y);
  if (count == VEC) {
    *reinterpret_cast<Pack<T, VEC>*>(y + i0) = pk;
  } else {
    for (int k = 0; k < count; ++k) y[i0 + k] = pk.v[k];
  }
}

// The count (<= VEC) elements at i of tensor t, converted (absent tensor or past count: zeros).
template <typename T, int VEC, typename I>
__device__ __forceinline__ void load_run(const T* t, const T* stand_in, I i, int count,
                                         typename Acc<T>::type (&out)[VEC]) {
  using A = typename Acc<T>::type;
  if (count == VEC) {  // unconditional (an absent tensor reads x's run instead): no branch between the loads
    const Pack<T, VEC> pk = *reinterpret_cast<const Pack<T, VEC>*>((t ? t : stand_in) + i);
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = t ? to_acc(pk.v[k]) : A(0);
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = (t && k < count) ? to_acc(t[i + k]) : A(0);
  }
}

// Elements i0 .. i0 + count (count <= VEC) of the general kernel: x and the reference tensors loaded first.
template <typename T, int VEC, typename I>
__device__ __forceinline__ void general_step(const BiasActParams& p, I i0, int count) {
  using A = typename Acc<T>::type;
  const T* x = static_cast<const T*>(p.x);
  A xv[VEC], xr[VEC], yr[VEC], dr[VEC];
  load_run<T, VEC, I>(x, x, i0, count, xv);
  load_run<T, VEC, I>(static_cast<const T*>(p.xref), x, i0, count, xr);
  load_run<T, VEC, I>(static_cast<const T*>(p.yref), x, i0, count, yr);
  load_run<T, VEC, I>(static_cast<const T*>(p.dyref), x, i0, count, dr);
  general_run<T, VEC, I>(p, i0, count, xv, xr, yr, dr);
}

// Every mode and activation. Each thread takes whole runs of VEC elements, whose loads (x and the
// reference tensors) are unconditional, so they are all in flight at once; the partial run at the end,
// if any, is one thread's work.
template <typename T, int VEC, typename I>
__global__ void bias_act_kernel(BiasActParams p) {
  const I numel = static_cast<I>(p.numel), whole = numel / VEC;
  for (I run = I(blockIdx.x) * blockDim.x + threadIdx.x; run < whole; run += I(gridDim.x) * blockDim.x)
    general_step<T, VEC, I>(p, run * VEC, VEC);
  const int tail = static_cast<int>(numel - whole * VEC);
  if (tail > 0 && blockIdx.x == 0 && threadIdx.x == 0) general_step<T, VEC, I>(p, whole * VEC, tail);
}

// Forward only (mode 0) with a leaky ReLU or linear activation: the pass inference and every training
// forward run. The general kernel above keeps the reference tensors, the gradient modes and a run-time
// activation switch in one body; torch.compile's fused kernel beat it 2.4x at the op level on an H200
// (bench/RESULTS.md), and its SASS shows one 16-byte load in flight per thread, the others waiting
// behind branches (bench/kernel_sass.py). This one has the activation as a template parameter, no
// reference tensors, and RUNS whole runs per thread loaded unconditionally before any maths (the
// index clamped to the last whole run, so no branch sits between the loads); the partial run at the
// end, if any, is one thread's work. The per-channel operands (bias, scale, out_scale) are loaded as
// the layout allows (LAYOUT, chosen on the host):
//   kPerElement: one load per element and operand (any layout; the general kernel's walk);
//   kPlanar:     the bias dimension's stride is a multiple of VEC (NCHW, H*W % VEC == 0): the VEC
//                elements of a run share their channel and sample, one load per run and operand;
//   kChannelsInner: the bias dimension is the innermost (channels-last) and size_b % VEC == 0: the run's
//                channels are c0 .. c0 + VEC - 1, one 16-byte load per run and operand.
// The default forward for these activations since the fifth session, on that static evidence (64-112
// bytes in flight per thread against 16: bench/kernel_sass.py); SGV_BIAS_ACT_LEAN=0 selects the general
// kernel, to time against on a GPU.
enum Layout : int { kPerElement = 0, kPlanar = 1, kChannelsInner = 2 };

// The VEC values of a per-channel operand t for one run whose first element reads t[at] (dflt if no t).
template <typename T, int VEC, int LAYOUT>
__device__ __forceinline__ void channel_operand(const T* t, uint32_t at, typename Acc<T>::type (&out)[VEC],
                                                typename Acc<T>::type dflt) {
  using A = typename Acc<T>::type;
  if (!t) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = dflt;
    return;
  }
  if (LAYOUT == kChannelsInner) {
    const Pack<T, VEC> pk = *reinterpret_cast<const Pack<T, VEC>*>(t + at);
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = to_acc(pk.v[j]);
  } else if (LAYOUT == kPlanar) {
    const A v = to_acc(t[at]);
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = v;
  }
}

// y[i0 .. i0 + count) from the values v (elements i0 ...); LAYOUT != kPerElement needs a whole run.
template <typename T, int VEC, int ACT, int LAYOUT>
__device__ __forceinline__ void forward_run(const BiasActParams& p, const typename Acc<T>::type (&v)[VEC],
                                            uint32_t i0, int count) {
  using A = typename Acc<T>::type;
  const uint32_t step_b = static_cast<uint32_t>(p.step_b), size_b = static_cast<uint32_t>(p.size_b);
  const uint32_t step_n = static_cast<uint32_t>(p.step_n);
  const T* b = static_cast<const T*>(p.b);
  const T* scale = static_cast<const T*>(p.scale);
  const T* out_scale = static_cast<const T*>(p.out_scale);
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  const uint32_t q = i0 / step_b;
  uint32_t r = i0 - q * step_b, c = q % size_b, n = 0, rn = 0;
  if (scale || out_scale) { n = i0 / step_n; rn = i0 - n * step_n; }
  A bv[VEC], sv[VEC], ov[VEC];
  if (LAYOUT != kPerElement) {
    channel_operand<T, VEC, LAYOUT>(b, c, bv, A(0));
    channel_operand<T, VEC, LAYOUT>(scale, n * size_b + c, sv, A(1));
    channel_operand<T, VEC, LAYOUT>(out_scale, n * size_b + c, ov, A(1));
  }
  Pack<T, VEC> pk;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    if (j >= count) break;  // the partial run: past its end the sample index (scales) leaves the tensor
    A u = v[j];
    if (LAYOUT == kPerElement) {
      if (scale) u *= to_acc(scale[n * size_b + c]);
      if (b) u += to_acc(b[c]);
    } else {
      u = u * sv[j] + bv[j];
    }
    if (ACT == kLrelu) u = u > A(0) ? u : u * alpha;
    u *= gain;
    if (clamp >= A(0)) u = u > clamp ? clamp : (u < -clamp ? -clamp : u);
    if (LAYOUT == kPerElement) {
      if (out_scale) u *= to_acc(out_scale[n * size_b + c]);
      if (++r == step_b) { r = 0; if (++c == size_b) c = 0; }
      if (++rn == step_n) { rn = 0; ++n; }
    } else {
      u *= ov[j];
    }
    pk.v[j] = from_acc<T>(u);
  }
  T* y = static_cast<T*>(p.y);
  if (count == VEC) {
    *reinterpret_cast<Pack<T, VEC>*>(y + i0) = pk;
  } else {
    for (int j = 0; j < count; ++j) y[i0 + j] = pk.v[j];
  }
}

template <typename T, int VEC, int RUNS, int ACT, int LAYOUT>
__global__ void __launch_bounds__(256) bias_act_fwd_kernel(BiasActParams p) {
  using A = typename Acc<T>::type;
  const T* x = static_cast<const T*>(p.x);
  const uint32_t numel = static_cast<uint32_t>(p.numel), whole = numel / VEC;  // runs inside the tensor
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t run0 = blockIdx.x * blockDim.x + threadIdx.x; run0 < whole; run0 += stride * RUNS) {
    Pack<T, VEC> xs[RUNS];
#pragma unroll
    for (int k = 0; k < RUNS; ++k) {  // RUNS 16-byte loads in flight: past the end, the last run again
      const uint32_t last = whole - 1, run = run0 + k * stride < last ? run0 + k * stride : last;
      xs[k] = *reinterpret_cast<const Pack<T, VEC>*>(x + run * VEC);
    }
#pragma unroll
    for (int k = 0; k < RUNS; ++k) {
      const uint32_t run = run0 + k * stride;
      if (run >= whole) break;
      A v[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[j] = to_acc(xs[k].v[j]);
      forward_run<T, VEC, ACT, LAYOUT>(p, v, run * VEC, VEC);
    }
  }
  const int tail = static_cast<int>(numel - whole * VEC);
  if (tail > 0 && blockIdx.x == 0 && threadIdx.x == 0) {  // the partial run: per element, any layout
    A v[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[j] = j < tail ? to_acc(x[whole * VEC + j]) : A(0);
    forward_run<T, VEC, ACT, kPerElement>(p, v, whole * VEC, tail);
  }
}

bool aligned16(const void* ptr) { return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// How the forward kernel may load the per-channel operands of a run of vec elements (see Layout):
// the run must not cross a channel (nor, with scales, a sample), and 16-byte operand loads need
// aligned operands whose rows are whole vectors.
int operand_layout(const BiasActParams& p, int vec) {
  const bool scaled = p.scale || p.out_scale;
  if (scaled && p.step_n % vec != 0 && p.step_n < p.numel) return kPerElement;
  if (p.step_b % vec == 0) return kPlanar;
  if (p.step_b == 1 && p.size_b % vec == 0 && aligned16(p.b) && aligned16(p.scale) && aligned16(p.out_scale))
    return kChannelsInner;
  return kPerElement;
}

template <typename T>
cudaError_t launch_typed(const BiasActParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kThreads = 256;
  const bool vec = aligned16(p.x) && aligned16(p.xref) && aligned16(p.yref) && aligned16(p.dyref) &&
                   aligned16(p.y);
  const bool small = p.numel + kVec < (int64_t(1) << 31);
  const int64_t runs = vec ? (p.numel + kVec - 1) / kVec : p.numel;
  const int blocks = static_cast<int>(grid_blocks((runs + kThreads - 1) / kThreads, 65536));
  const char* general = std::getenv("SGV_BIAS_ACT_LEAN");  // "0": the general kernel, to time against
  if (!(general && general[0] == '0') && vec && small && p.mode == 0 && !p.xref && !p.yref && !p.dyref &&
      (p.act == kLrelu || p.act == kLinear)) {
    constexpr int kRuns = 4;
    const int lean_blocks = static_cast<int>(grid_blocks((runs + kThreads * kRuns - 1) / (kThreads * kRuns), 65536));
    const int layout = operand_layout(p, kVec);
    void (*fwd)(BiasActParams) = nullptr;
    if (p.act == kLrelu) {
      fwd = layout == kChannelsInner ? bias_act_fwd_kernel<T, kVec, kRuns, kLrelu, kChannelsInner>
          : layout == kPlanar        ? bias_act_fwd_kernel<T, kVec, kRuns, kLrelu, kPlanar>
                                     : bias_act_fwd_kernel<T, kVec, kRuns, kLrelu, kPerElement>;
    } else {
      fwd = layout == kChannelsInner ? bias_act_fwd_kernel<T, kVec, kRuns, kLinear, kChannelsInner>
          : layout == kPlanar        ? bias_act_fwd_kernel<T, kVec, kRuns, kLinear, kPlanar>
                                     : bias_act_fwd_kernel<T, kVec, kRuns, kLinear, kPerElement>;
    }
    SGV_LAUNCH(fwd, lean_blocks, kThreads, 0, stream, p);
    return cudaGetLastError();
  }
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
