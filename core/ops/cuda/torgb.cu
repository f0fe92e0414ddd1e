// toRGB as the epilogue of bias_act, at inference.
//
// The last conv of every synthesis block (conv1) ends in bias_act, and its output is then read twice: by
// the next block's up-conv and by the block's toRGB, a 1x1 modulated conv to R = 3 channels (no
// demodulation) whose clamped result is added to the upsampled skip image. This kernel does both in one
// pass over conv1's raw output: each thread takes one pixel, applies bias_act to its C channels (writing
// them, as bias_act does) and accumulates the R dot products from the values it has just rounded to the
// activations' dtype (what toRGB would read back), then writes skip + clamp(rgb + bias) in float32. Gone
// per block: toRGB's read of x (C values per pixel: 8 MiB per frame at 256x256x64 fp16), its matmul, the
// bias_act and cast of its output and the add, four launches and their traffic.
//
// The toRGB weights, bias_act's per-channel operands and the rgb weights of the thread block's plane
// (one sample n, one group g: the frame-major layout's video) are staged in shared memory, where every
// thread of the block reads the same address (a broadcast). Channels-last activations (the fp16 blocks)
// are read and written as 16-byte packs, kRgbChunk of them issued before any maths; NCHW ones one element
// per load, kRgbChunk channels at a time (consecutive threads: consecutive pixels, so coalesced).
#include <algorithm>

#include "act.cuh"
#include "common.h"
#include "types.cuh"

namespace sgv {
namespace {

constexpr int kRgbThreads = 256;
constexpr int kRgbChunk = 4;  // loads in flight per thread (16-byte packs, or single elements for NCHW)
constexpr int kMaxRgb = 4;    // output channels of toRGB (3 for RGB)

__device__ __forceinline__ int rgb_min(int a, int b) { return a < b ? a : b; }

// bias_act's forward of one value of channel c (the shared-memory operands of the plane).
template <int ACT>
__device__ __forceinline__ float rgb_bias_act(const BiasActToRGBParams& p, float u, float scale, float bias,
                                              float alpha, float gain, float clamp) {
  u = u * scale + bias;
  if (ACT == kLrelu) u = u > 0.f ? u : u * alpha;
  else if (ACT != kLinear) u = act_fwd(p.act, u, alpha);
  u *= gain;
  if (clamp >= 0.f) u = u > clamp ? clamp : (u < -clamp ? -clamp : u);
  return u;
}

// One channel's contribution: returns y's value, adds the rounded activation's share to the rgb sums.
template <typename T, int ACT>
__device__ __forceinline__ T rgb_channel(const BiasActToRGBParams& p, const float* wv, const float* bv,
                                         const float* sv, const float* ov, int c, float x, float alpha, float gain,
                                         float clamp, float (&acc)[kMaxRgb]) {
  const float u = rgb_bias_act<ACT>(p, x, sv[c], bv[c], alpha, gain, clamp);
  const T stored = from_acc<T>(u);  // toRGB reads the activations as stored, in their dtype
  const float r = to_acc(stored);
#pragma unroll
  for (int k = 0; k < kMaxRgb; ++k)
    if (k < p.rgb_c) acc[k] += wv[k * p.c + c] * r;
  return ov ? from_acc<T>(u * ov[c]) : stored;
}

// N consecutive floats of shared memory (16-byte aligned: N a multiple of 4) with N / 4 vector loads.
template <int N>
__device__ __forceinline__ void smem_floats(const float* at, float (&out)[N]) {
#pragma unroll
  for (int i = 0; i < N; i += 4) {
    const float4 v = *reinterpret_cast<const float4*>(at + i);
    out[i] = v.x; out[i + 1] = v.y; out[i + 2] = v.z; out[i + 3] = v.w;
  }
}

// One 16-byte pack of kVec channels from c (a multiple of kVec): its operands read as vectors, once per pack.
template <typename T, int ACT, int kVec>
__device__ __forceinline__ Pack<T, kVec> rgb_pack(const BiasActToRGBParams& p, const float* wv, const float* bv,
                                                 const float* sv, const float* ov, int c, const Pack<T, kVec>& xs,
                                                 float alpha, float gain, float clamp, float (&acc)[kMaxRgb]) {
  float bias[kVec], scale[kVec], out_scale[kVec];
  smem_floats<kVec>(bv + c, bias);
  smem_floats<kVec>(sv + c, scale);
  if (ov) smem_floats<kVec>(ov + c, out_scale);
  float r[kVec];
  Pack<T, kVec> out;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const float u = rgb_bias_act<ACT>(p, to_acc(xs.v[j]), scale[j], bias[j], alpha, gain, clamp);
    const T stored = from_acc<T>(u);  // toRGB reads the activations as stored, in their dtype
    r[j] = to_acc(stored);
    out.v[j] = ov ? from_acc<T>(u * out_scale[j]) : stored;
  }
#pragma unroll
  for (int k = 0; k < kMaxRgb; ++k) {
    if (k >= p.rgb_c) break;
    float w[kVec];
    smem_floats<kVec>(wv + k * p.c + c, w);
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc[k] += w[j] * r[j];
  }
  return out;
}

// One block per chunk of `per_block` pixels of one plane (n, g); threads stride the chunk by blockDim (the
// launch makes per_block = blockDim.x: one pixel per thread). Shared memory: the plane's modulated toRGB weights [R, C],
// then bias, scale and out_scale [C] each, as floats.
template <typename T, int ACT, bool VEC>
__global__ void __launch_bounds__(kRgbThreads, 4) bias_act_torgb_kernel(BiasActToRGBParams p, int blocks_per_plane,
                                                                     int per_block) {
  SGV_DYNAMIC_SMEM(smem);
  const int C = p.c, R = p.rgb_c;
  float* wv = reinterpret_cast<float*>(smem);
  float* bv = wv + R * C;
  float* sv = bv + C;
  float* ov = sv + C;
  const int plane = blockIdx.x / blocks_per_plane;
  const int n = plane / p.groups, g = plane % p.groups;
  const int64_t ch0 = int64_t(g) * C, nch0 = int64_t(n) * p.groups * C + ch0;
  const float* s_src = p.rgb_s + ((p.rgb_s_shared ? 0 : int64_t(n)) * p.groups + g) * C;
  for (int i = threadIdx.x; i < R * C; i += blockDim.x) wv[i] = p.rgb_w[i] * s_src[i % C];  // eq. 1, no demod
  for (int i = threadIdx.x; i < C; i += blockDim.x) {
    bv[i] = p.b ? to_acc(static_cast<const T*>(p.b)[ch0 + i]) : 0.f;
    sv[i] = p.scale ? to_acc(static_cast<const T*>(p.scale)[nch0 + i]) : 1.f;
    ov[i] = p.out_scale ? to_acc(static_cast<const T*>(p.out_scale)[nch0 + i]) : 1.f;
  }
  __syncthreads();
  const float* out_scale = p.out_scale ? ov : nullptr;
  const float alpha = float(p.alpha), gain = float(p.gain), clamp = float(p.clamp);
  const int hw = p.h * p.w;
  const int first = (blockIdx.x % blocks_per_plane) * per_block, last = rgb_min(first + per_block, hw);
  for (int pix = first + threadIdx.x; pix < last; pix += blockDim.x) {
    const int py = pix / p.w, px = pix - py * p.w;
    const T* x = static_cast<const T*>(p.x) + n * p.sx[0] + ch0 * p.sx[1] + py * p.sx[2] + px * p.sx[3];
    T* y = static_cast<T*>(p.y) + n * p.sy[0] + ch0 * p.sy[1] + py * p.sy[2] + px * p.sy[3];
    float acc[kMaxRgb] = {0.f, 0.f, 0.f, 0.f};
    if (VEC) {  // channels innermost: the pixel's C values are contiguous, read as 16-byte packs (C % kVec == 0,
                // so the shared-memory operands of a pack are 16-byte aligned vectors too)
      constexpr int kVec = 16 / sizeof(T);
      for (int c0 = 0; c0 < C; c0 += kVec * kRgbChunk) {
        Pack<T, kVec> xs[kRgbChunk];
#pragma unroll
        for (int k = 0; k < kRgbChunk; ++k)  // past the last channel: the last pack again (no branch)
          xs[k] = *reinterpret_cast<const Pack<T, kVec>*>(x + rgb_min(c0 + k * kVec, C - kVec));
#pragma unroll
        for (int k = 0; k < kRgbChunk; ++k) {
          const int c = c0 + k * kVec;
          if (c >= C) break;
          *reinterpret_cast<Pack<T, kVec>*>(y + c) =
              rgb_pack<T, ACT, kVec>(p, wv, bv, sv, out_scale, c, xs[k], alpha, gain, clamp, acc);
        }
      }
    } else {  // any strides, one element per load
      for (int c0 = 0; c0 < C; c0 += kRgbChunk) {
        float xs[kRgbChunk];
#pragma unroll
        for (int k = 0; k < kRgbChunk; ++k) xs[k] = to_acc(x[rgb_min(c0 + k, C - 1) * p.sx[1]]);
#pragma unroll
        for (int k = 0; k < kRgbChunk; ++k) {
          const int c = c0 + k;
          if (c >= C) break;
          y[c * p.sy[1]] = rgb_channel<T, ACT>(p, wv, bv, sv, out_scale, c, xs[k], alpha, gain, clamp, acc);
        }
      }
    }
    const float rgb_clamp = float(p.rgb_clamp);
#pragma unroll
    for (int k = 0; k < kMaxRgb; ++k) {
      if (k >= R) break;
      float o = acc[k] + (p.rgb_b ? p.rgb_b[k] : 0.f);
      if (rgb_clamp >= 0.f) o = o > rgb_clamp ? rgb_clamp : (o < -rgb_clamp ? -rgb_clamp : o);
      const int64_t at = ((int64_t(n) * p.groups + g) * R + k) * hw + pix;
      p.img[at] = (p.skip ? p.skip[at] : 0.f) + o;
    }
  }
}

bool rgb_aligned16(const void* ptr, int64_t elements, int64_t bytes_per_element) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && (elements * bytes_per_element) % 16 == 0;
}

// The 16-byte path: channels innermost in x and y, whole packs per group, every pixel's row aligned.
template <typename T>
bool rgb_vectorizable(const BiasActToRGBParams& p) {
  constexpr int kVec = 16 / sizeof(T);
  if (p.sx[1] != 1 || p.sy[1] != 1 || p.c % kVec != 0) return false;
  for (int d : {0, 2, 3})
    if (!rgb_aligned16(p.x, p.sx[d], sizeof(T)) || !rgb_aligned16(p.y, p.sy[d], sizeof(T))) return false;
  return true;
}

using RgbKernel = void (*)(BiasActToRGBParams, int, int);

template <typename T, bool VEC>
RgbKernel rgb_kernel(int act) {
  if (act == kLrelu) return bias_act_torgb_kernel<T, kLrelu, VEC>;
  if (act == kLinear) return bias_act_torgb_kernel<T, kLinear, VEC>;
  return bias_act_torgb_kernel<T, 0, VEC>;  // the run-time switch of act_fwd
}

template <typename T>
cudaError_t launch_torgb(const BiasActToRGBParams& p, cudaStream_t stream) {
  const int hw = p.h * p.w;
  const int threads = std::min(kRgbThreads, (hw + 31) / 32 * 32);  // small planes (4x4, 8x8): fewer idle threads
  const int per_plane = (hw + threads - 1) / threads;
  const int64_t blocks = int64_t(p.batch) * p.groups * per_plane;
  const size_t smem = sizeof(float) * (size_t(p.rgb_c) + 3) * p.c;
  auto kernel = rgb_vectorizable<T>(p) ? rgb_kernel<T, true>(p.act) : rgb_kernel<T, false>(p.act);
  SGV_LAUNCH(kernel, static_cast<unsigned>(blocks), threads, smem, stream, p, per_plane, threads);
  return cudaGetLastError();
}

}  // namespace

cudaError_t bias_act_torgb_launch(const BiasActToRGBParams& p, int dtype, cudaStream_t stream) {
  if (int64_t(p.batch) * p.groups * p.h * p.w == 0) return cudaSuccess;
  if (p.rgb_c < 1 || p.rgb_c > kMaxRgb || p.c < 1) return cudaErrorInvalidValue;
  switch (dtype) {
    case kFloat32: return launch_torgb<float>(p, stream);
    case kFloat16: return launch_torgb<__half>(p, stream);
    case kBFloat16: return launch_torgb<__nv_bfloat16>(p, stream);
    default: return cudaErrorInvalidValue;  // float64: the PyTorch ops
  }
}

}  // namespace sgv
