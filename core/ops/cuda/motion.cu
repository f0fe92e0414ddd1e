// The motion encoder's elementwise work at inference, as two kernels (core/motion.py):
// - token_noise: motion noise tokens (core/noise.py's counter-based Gaussian noise) for token windows,
//   y[m, l, :] = token_noise(seeds[sample[m]], start[m] + l, dim), the same integer hash (splitmix64
//   finalizer, wrapping 64-bit arithmetic) and the same float64 Box-Muller as the PyTorch ops;
// - time_encoding: the acyclic positional encoding v_t (paper eqs. 2-5) from its predictors' outputs.
//
// Why kernels: in PyTorch ops the hash is ~60 elementwise int64 launches on a few kilobytes and the
// encoding ~45 more (remainders, float64 waves, sin / cos, interpolation), together most of the ~125
// launches of the motion encoder that a CUDA-graphed generator call replays, and of an eager call at
// batch 1 (scrubbing). Here they are two.
#include <algorithm>
#include <cmath>

#include "common.h"
#include "types.cuh"

namespace sgv {
namespace {

constexpr int kNoiseThreads = 256;
constexpr uint64_t kMul1 = 0xBF58476D1CE4E5B9ull;
constexpr uint64_t kMul2 = 0x94D049BB133111EBull;
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr uint64_t kToken = 0xD1B54A32D192ED03ull;

__device__ __forceinline__ uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= kMul1;
  x ^= x >> 27;
  x *= kMul2;
  return x ^ (x >> 31);
}

// 53 random bits as a double in [0, 1)
__device__ __forceinline__ double uniform(uint64_t key, int64_t j) {
  return double(mix(key + uint64_t(j + 1) * kGolden) >> 11) * 0x1p-53;
}

// One thread per (window m, token l, pair p): the pair's two normals, dims 2p and 2p + 1 (the last one
// dropped for an odd dim, as the PyTorch ops do).
__global__ void __launch_bounds__(kNoiseThreads) token_noise_kernel(TokenNoiseParams p) {
  const int64_t pairs = (p.dim + 1) / 2;
  const int64_t total = int64_t(p.windows) * p.length * pairs;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t pair = idx % pairs, row = idx / pairs;  // row = m * length + l
    const int64_t m = row / p.length, l = row % p.length;
    const int64_t video = p.sample ? p.sample[m] : m;
    float* y = p.y + row * p.dim + 2 * pair;
    if (video < 0 || video >= p.num_seeds) {  // a bad index: NaN tokens rather than a stray read
      y[0] = NAN;
      if (2 * pair + 1 < p.dim) y[1] = NAN;
      continue;
    }
    const uint64_t seed = uint64_t(p.seeds[video]);
    const uint64_t token = uint64_t(p.start[m] + l);
    const uint64_t key = mix(mix(seed + kGolden) ^ (token * kToken));
    const double u1 = uniform(key, 2 * pair), u2 = uniform(key, 2 * pair + 1);
    const double r = sqrt(-2.0 * log1p(-u1));  // 1 - u1 is in (0, 1]: the log is finite
    const double theta = 6.283185307179586 * u2;  // the PyTorch ops' 2.0 * math.pi * u2
    y[0] = float(r * cos(theta));
    if (2 * pair + 1 < p.dim) y[1] = float(r * sin(theta));
  }
}

// torch.remainder for floating point: the result takes the divisor's sign
template <typename F>
__device__ __forceinline__ F py_remainder(F a, F b) {
  F mod = fmod(a, b);
  if (mod != F(0) && ((b < F(0)) != (mod < F(0)))) mod += b;
  return mod;
}

// Products and sums rounded one by one, as the PyTorch ops (separate kernels) round them: no FMA
// contraction, so the kernel reproduces their float32 results instead of differing in the last bits.
#ifdef SGV_HOST_EMULATION
inline float mul_rn(float a, float b) { return a * b; }
inline float add_rn(float a, float b) { return a + b; }
inline double mul_rn(double a, double b) { return a * b; }
inline double add_rn(double a, double b) { return a + b; }
#else
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
#endif

// The sin / cos wave of frequency f at time tt (AlignedTimeEncoder.forward's emb()): exact, the argument in
// float64 reduced modulo 2 pi before the phase is added; else the reference's float32 order of operations.
template <typename TT>
__device__ __forceinline__ void wave(const TimeEncodingParams& p, int f, float scale, float phase, TT tt,
                                     float& s, float& c) {
  if (p.exact) {
    double arg = mul_rn(mul_rn(double(p.freqs[f]), double(scale)), double(tt));
    arg = add_rn(py_remainder(arg, 6.283185307179586), double(phase));  // 2 * np.pi
    s = float(sin(arg));
    c = float(cos(arg));
  } else {
    const float arg = add_rn(mul_rn(mul_rn(p.freqs[f], scale), float(tt)), phase);
    s = sinf(arg);
    c = cosf(arg);
  }
}

// One thread per (frame m, wave f): columns f (sine) and F + f (cosine) of v[m] (eqs. 2-5): the waves at t
// minus their linear interpolation between the anchors t_l and t_r, plus the interpolated aligners.
template <typename TT>
__global__ void __launch_bounds__(kNoiseThreads) time_encoding_kernel(TimeEncodingParams p) {
  const int64_t total = p.frames * p.freqs_n;
  const int64_t two_f = 2 * p.freqs_n;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t m = idx / p.freqs_n;
    const int f = int(idx % p.freqs_n);
    const TT t = static_cast<const TT*>(p.t)[m], dz = TT(p.delta_z);
    const TT t_rem = py_remainder(t, dz);
    const TT t_left = t - t_rem, t_right = t_left + dz;
    const float alpha = float(t_rem / dz), beta = 1.f - alpha;
    const float scale = add_rn(m_tanh(p.scale_logits[idx]), 1.f);  // in (0, 2)
    const float phase = mul_rn(p.phase_logits[idx], p.phase_scales[f]);
    float s, c, sl, cl, sr, cr;
    wave(p, f, scale, phase, t, s, c);
    wave(p, f, scale, phase, t_left, sl, cl);
    wave(p, f, scale, phase, t_right, sr, cr);
    const float* al = p.aligners_left + m * two_f;
    const float* ar = p.aligners_right + m * two_f;
    const float emb[2] = {s, c}, left[2] = {sl, cl}, right[2] = {sr, cr};
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int64_t col = f + k * p.freqs_n;
      const float remove = add_rn(mul_rn(left[k], beta), mul_rn(right[k], alpha));  // eq. 4
      const float add = add_rn(mul_rn(al[col], beta), mul_rn(ar[col], alpha));      // eq. 5
      p.v[m * two_f + col] = add_rn(emb[k] - remove, add);
    }
  }
}

}  // namespace

cudaError_t time_encoding_launch(const TimeEncodingParams& p, cudaStream_t stream) {
  const int64_t total = p.frames * p.freqs_n;
  if (total == 0) return cudaSuccess;
  const int64_t blocks = grid_blocks((total + kNoiseThreads - 1) / kNoiseThreads, int64_t(1) << 16);
  if (p.t_double) {
    SGV_LAUNCH(time_encoding_kernel<double>, static_cast<unsigned>(blocks), kNoiseThreads, 0, stream, p);
  } else {
    SGV_LAUNCH(time_encoding_kernel<float>, static_cast<unsigned>(blocks), kNoiseThreads, 0, stream, p);
  }
  return cudaGetLastError();
}

cudaError_t token_noise_launch(const TokenNoiseParams& p, cudaStream_t stream) {
  const int64_t total = int64_t(p.windows) * p.length * ((p.dim + 1) / 2);
  if (total == 0) return cudaSuccess;
  const int64_t blocks = grid_blocks((total + kNoiseThreads - 1) / kNoiseThreads, int64_t(1) << 16);
  SGV_LAUNCH(token_noise_kernel, static_cast<unsigned>(blocks), kNoiseThreads, 0, stream, p);
  return cudaGetLastError();
}

}  // namespace sgv
