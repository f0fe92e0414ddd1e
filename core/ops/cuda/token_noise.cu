// Motion noise tokens (core/noise.py's counter-based Gaussian noise) for token windows, in one kernel:
// y[m, l, :] = token_noise(seeds[sample[m]], start[m] + l, dim), the same integer hash (splitmix64
// finalizer, wrapping 64-bit arithmetic) and the same float64 Box-Muller as the PyTorch ops.
//
// Why a kernel: in PyTorch ops the hash is ~60 elementwise int64 launches on a few kilobytes (plus the
// window's index arithmetic), the bulk of the ~130 launches of the motion encoder that a CUDA-graphed
// generator call replays, and of an eager call at batch 1 (scrubbing). Here it is one launch.
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

}  // namespace

cudaError_t token_noise_launch(const TokenNoiseParams& p, cudaStream_t stream) {
  const int64_t total = int64_t(p.windows) * p.length * ((p.dim + 1) / 2);
  if (total == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((total + kNoiseThreads - 1) / kNoiseThreads, int64_t(1) << 16);
  SGV_LAUNCH(token_noise_kernel, static_cast<unsigned>(blocks), kNoiseThreads, 0, stream, p);
  return cudaGetLastError();
}

}  // namespace sgv
