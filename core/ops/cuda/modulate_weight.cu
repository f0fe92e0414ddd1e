// The per-sample modulated, demodulated conv weights of StyleGAN2 (Karras et al. 2020, eqs. 1 and 3) in
// one kernel: y[n, o, i, k] = w[o, i, k] * s'[n, i] * d[n, o], with s' = s / max_i |s[n, i]| when the
// fp16 pre-normalization asks for it and d[n, o] = rsqrt(sum_i s'[n, i]^2 * wsq[o, i] + eps) (eq. 3,
// factorised: wsq[o, i] = sum_k w[o, i, k]^2 is computed once per weight and cached by the caller).
//
// Why a kernel: at inference each video's (or, in the grouped conv, each sample's) weights are folded
// once per call, and in PyTorch ops that fold is ~10 launches per layer (the styles' max and division,
// square, matmul, add, rsqrt, two multiplies, the cast into the conv's dtype and memory format): ~140
// of the ~200 launches of a CUDA-graphed 1 x 32 call of the `256` generator, each a few microseconds
// of almost no work. Here it is one launch per layer, writing the conv's operand directly in its dtype
// and layout. Forward only: training keeps the differentiable PyTorch ops. The shared conv (N samples,
// one weight) takes the coefficients instead: d [N, O] and the normalized styles s' [N, I] (its input
// modulation), in one launch each instead of 4-8 ops.
#include <algorithm>

#include "common.h"
#include "types.cuh"

namespace sgv {
namespace {

constexpr int kModThreads = 256;
constexpr int kUnroll = 4;

// Sum (or max) of v over the block's threads; `red` holds blockDim.x floats. Every thread gets the
// result. A shared-memory tree, not warp shuffles: the host emulation runs threads as fibers that meet
// only at barriers, with no warp in lockstep.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const float other = red[threadIdx.x + half];
      red[threadIdx.x] = MAX ? fmaxf(red[threadIdx.x], other) : red[threadIdx.x] + other;
    }
    __syncthreads();
  }
  const float total = red[0];
  __syncthreads();  // red is reused by the next reduction
  return total;
}

// One block per (n, o) filter (grid-stride). Shared memory: blockDim.x floats for the reductions, then
// the sample's I (normalized) styles. Element e of a filter reads w[o * E + e] and writes
// y[(n * O + o) * E + e]: w has the output's per-filter layout, so both accesses are coalesced.
template <typename T, bool I_INNER>
__global__ void __launch_bounds__(kModThreads) modulate_weight_kernel(ModulateWeightParams p) {
  SGV_DYNAMIC_SMEM(smem);
  float* red = reinterpret_cast<float*>(smem);
  float* styles = red + blockDim.x;
  const int per_filter = p.c_in * p.taps;  // < 2^30 (ops.cpp checks): 32-bit index arithmetic per element
  for (int64_t nf = blockIdx.x; nf < int64_t(p.n) * p.c_out; nf += gridDim.x) {
    const int n = int(nf / p.c_out), o = int(nf % p.c_out);
    const float* s = p.s + int64_t(n) * p.c_in;
    float peak = 0.f;
    if (p.norm_styles) {
      for (int i = threadIdx.x; i < p.c_in; i += blockDim.x) peak = fmaxf(peak, fabsf(s[i]));
      peak = block_reduce<true>(peak, red);
    }
    float sum = 0.f;
    for (int i = threadIdx.x; i < p.c_in; i += blockDim.x) {
      const float v = p.norm_styles ? s[i] / peak : s[i];
      styles[i] = v;
      if (p.wsq) sum += v * v * p.wsq[int64_t(o) * p.c_in + i];
    }
    const float d = p.wsq ? m_rsqrt(block_reduce<false>(sum, red) + p.eps) : 1.f;
    __syncthreads();  // styles[] complete (block_reduce synchronised already when wsq is given)
    const float* w = p.w + int64_t(o) * per_filter;
    T* y = static_cast<T*>(p.y) + nf * per_filter;
    // kUnroll loads issued before any is used: a thread keeps 4 in flight, not 1 (bench/kernel_sass.py)
    for (int e0 = threadIdx.x; e0 < per_filter; e0 += kUnroll * blockDim.x) {
      float v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int e = e0 + u * blockDim.x;
        v[u] = e < per_filter ? w[e] : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int e = e0 + u * blockDim.x;
        if (e >= per_filter) break;
        const int i = I_INNER ? e % p.c_in : e / p.taps;
        y[e] = from_acc<T>(typename Acc<T>::type(v[u] * (styles[i] * d)));
      }
    }
    __syncthreads();  // the next filter overwrites styles[]
  }
}

// The shared conv's per-sample coefficients (it scales activations instead of weights): grid (N, chunks
// of O). Each block normalizes its sample's styles into shared memory (blockIdx.y == 0 also writes them,
// the conv's input modulation, when s_out is given), then each thread sums one output channel's eq. 3
// over i, reading wsq transposed ([I, O]) so that neighbouring threads read neighbouring addresses.
template <typename T>
__global__ void __launch_bounds__(kModThreads) modulation_coefs_kernel(ModulationCoefsParams p) {
  SGV_DYNAMIC_SMEM(smem);
  float* red = reinterpret_cast<float*>(smem);
  float* styles = red + blockDim.x;
  const int n = blockIdx.x;
  const float* s = p.s + int64_t(n) * p.c_in;
  float peak = 1.f;
  if (p.norm_styles) {
    peak = 0.f;
    for (int i = threadIdx.x; i < p.c_in; i += blockDim.x) peak = fmaxf(peak, fabsf(s[i]));
    peak = block_reduce<true>(peak, red);
  }
  for (int i = threadIdx.x; i < p.c_in; i += blockDim.x) {
    styles[i] = p.norm_styles ? s[i] / peak : s[i];
    if (p.s_out && blockIdx.y == 0) static_cast<T*>(p.s_out)[int64_t(n) * p.c_in + i] = from_acc<T>(styles[i]);
  }
  __syncthreads();
  if (!p.wsq_t) return;
  for (int o = blockIdx.y * blockDim.x + threadIdx.x; o < p.c_out; o += gridDim.y * blockDim.x) {
    float sum = 0.f;
    for (int i = 0; i < p.c_in; ++i) sum += styles[i] * styles[i] * p.wsq_t[int64_t(i) * p.c_out + o];
    static_cast<T*>(p.d)[int64_t(n) * p.c_out + o] = from_acc<T>(m_rsqrt(sum + p.eps));
  }
}

template <typename T>
cudaError_t launch_coefs(const ModulationCoefsParams& p, cudaStream_t stream) {
  const int chunks = p.wsq_t ? (p.c_out + kModThreads - 1) / kModThreads : 1;
  const size_t smem = sizeof(float) * (kModThreads + size_t(p.c_in));
  SGV_LAUNCH(modulation_coefs_kernel<T>, dim3(p.n, chunks), kModThreads, smem, stream, p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_typed(const ModulateWeightParams& p, cudaStream_t stream) {
  const int64_t filters = int64_t(p.n) * p.c_out;
  const unsigned blocks = static_cast<unsigned>(grid_blocks(filters, int64_t(1) << 20));
  const size_t smem = sizeof(float) * (kModThreads + size_t(p.c_in));
  auto kernel = p.i_inner ? modulate_weight_kernel<T, true> : modulate_weight_kernel<T, false>;
  SGV_LAUNCH(kernel, blocks, kModThreads, smem, stream, p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t modulate_weight_launch(const ModulateWeightParams& p, int dtype, cudaStream_t stream) {
  if (int64_t(p.n) * p.c_out * p.c_in * p.taps == 0) return cudaSuccess;
  switch (dtype) {
    case kFloat32: return launch_typed<float>(p, stream);
    case kFloat16: return launch_typed<__half>(p, stream);
    case kBFloat16: return launch_typed<__nv_bfloat16>(p, stream);
    default: return cudaErrorInvalidValue;  // float64 weights: the PyTorch ops
  }
}

cudaError_t modulation_coefs_launch(const ModulationCoefsParams& p, int dtype, cudaStream_t stream) {
  if (p.n == 0 || p.c_in == 0) return cudaSuccess;
  switch (dtype) {
    case kFloat32: return launch_coefs<float>(p, stream);
    case kFloat16: return launch_coefs<__half>(p, stream);
    case kBFloat16: return launch_coefs<__nv_bfloat16>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace sgv
