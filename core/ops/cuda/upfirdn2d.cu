// upfirdn2d: pad, upsample by zero insertion, FIR-filter, downsample, as one tiled kernel.
//
// Each block produces one output tile of `planes` consecutive (n, c) planes. It first stages the
// filter (flipped unless flip, times gain, separable taps expanded) and the input pixels the tile
// reads in shared memory, zero outside the image, then every output pixel sums only the taps that
// hit a real (non-inserted) sample: with up = 2 a 4x4 filter costs 2x2 multiply-adds per pixel.
// The common StyleGAN2 shapes (4x4 filter, up 2 / down 2 / neither) are compiled with constant
// loop bounds; everything else runs the same code with run-time bounds.

#include <algorithm>
#include <cstdlib>

#include "act.cuh"
#include "common.h"
#include "types.cuh"

namespace sgv {
namespace {

constexpr int kThreads = 256;
constexpr int kSharedBytes = 48 * 1024;

__host__ __device__ __forceinline__ int floor_div(int a, int b) {
  const int q = a / b;
  return (q * b > a) ? q - 1 : q;  // b > 0
}
__host__ __device__ __forceinline__ int ceil_div(int a, int b) { return -floor_div(-a, b); }

struct Tile {
  int out_h, out_w, in_h, in_w, planes;  // tile sizes; planes per block
  int tiles_x, tiles_y;
};

// Input extent read by `out` consecutive outputs along one axis (see the gather in the kernel).
__host__ __device__ __forceinline__ int tile_in(int out, int up, int down, int taps) {
  return ((out - 1) * down + taps - 1) / up + 1;
}

// UP, DOWN, FH, FW > 0 fix those values at compile time (UP and DOWN for both axes); 0 = run time.
template <typename T, int UP, int DOWN, int FH, int FW>
__global__ void __launch_bounds__(kThreads) upfirdn2d_kernel(Upfirdn2dParams p, Tile t) {
  using A = typename Acc<T>::type;
  SGV_DYNAMIC_SMEM(smem_raw);
  A* s_f = reinterpret_cast<A*>(smem_raw);
  const int fh = FH ? FH : p.f_h, fw = FW ? FW : p.f_w;
  const int up_x = UP ? UP : p.up_x, up_y = UP ? UP : p.up_y;
  const int down_x = DOWN ? DOWN : p.down_x, down_y = DOWN ? DOWN : p.down_y;
  A* s_x = s_f + ((fh * fw + 3) & ~3);

  // Correlation taps: F[ky][kx] = gain * f[fh-1-ky][fw-1-kx] (a true convolution) unless flip.
  const A gain = A(p.gain);
  for (int k = threadIdx.x; k < fh * fw; k += blockDim.x) {
    const int ky = k / fw, kx = k - ky * fw;
    const int iy = p.flip ? ky : fh - 1 - ky, ix = p.flip ? kx : fw - 1 - kx;
    const float v = p.separable ? p.f[iy] * p.f[ix] : p.f[iy * fw + ix];
    s_f[k] = A(v) * gain;
  }

  const int num_planes = p.n * p.c;
  const int plane0 = blockIdx.x * t.planes;
  const int tile_px = t.out_h * t.out_w, tile_in_px = t.in_h * t.in_w;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);

  for (int tile = blockIdx.y; tile < t.tiles_x * t.tiles_y; tile += gridDim.y) {
    const int oy0 = (tile / t.tiles_x) * t.out_h, ox0 = (tile % t.tiles_x) * t.out_w;
    // First input row/column the tile reads: output o reads upsampled samples o*down - pad + k.
    const int iy0 = ceil_div(oy0 * down_y - p.pad_y0, up_y);
    const int ix0 = ceil_div(ox0 * down_x - p.pad_x0, up_x);

    __syncthreads();  // the previous tile's readers are done with s_x
    for (int k = threadIdx.x; k < t.planes * tile_in_px; k += blockDim.x) {
      const int pl = k / tile_in_px, rem = k - pl * tile_in_px;
      const int r = rem / t.in_w, col = rem - r * t.in_w;
      const int plane = plane0 + pl, iy = iy0 + r, ix = ix0 + col;
      A v = A(0);
      if (plane < num_planes && iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w) {
        const int n = plane / p.c, c = plane - n * p.c;
        v = to_acc(x[n * p.sx[0] + c * p.sx[1] + iy * p.sx[2] + ix * p.sx[3]]);
      }
      s_x[k] = v;
    }
    __syncthreads();

    for (int k = threadIdx.x; k < t.planes * tile_px; k += blockDim.x) {
      const int pl = k / tile_px, rem = k - pl * tile_px;
      const int ry = rem / t.out_w, rx = rem - ry * t.out_w;
      const int plane = plane0 + pl, oy = oy0 + ry, ox = ox0 + rx;
      if (plane >= num_planes || oy >= p.out_h || ox >= p.out_w) continue;
      // Taps ky with (oy*down - pad + ky) divisible by up hit real samples; the first is ky0.
      const int uy = oy * down_y - p.pad_y0, ux = ox * down_x - p.pad_x0;
      const int ky0 = floor_div(uy + up_y - 1, up_y) * up_y - uy;
      const int kx0 = floor_div(ux + up_x - 1, up_x) * up_x - ux;
      const A* src = s_x + pl * tile_in_px + ((uy + ky0) / up_y - iy0) * t.in_w + ((ux + kx0) / up_x - ix0);
      A acc = A(0);
      if constexpr (UP > 0 && FH > 0 && FW > 0) {
#pragma unroll
        for (int j = 0; j < (FH + UP - 1) / UP; ++j) {
          const int ky = ky0 + j * UP;
          if (ky < FH) {
#pragma unroll
            for (int i = 0; i < (FW + UP - 1) / UP; ++i) {
              const int kx = kx0 + i * UP;
              if (kx < FW) acc += s_f[ky * FW + kx] * src[j * t.in_w + i];
            }
          }
        }
      } else {
        for (int ky = ky0, j = 0; ky < fh; ky += up_y, ++j)
          for (int kx = kx0, i = 0; kx < fw; kx += up_x, ++i) acc += s_f[ky * fw + kx] * src[j * t.in_w + i];
      }
      const int n = plane / p.c, c = plane - n * p.c;
      y[n * p.sy[0] + c * p.sy[1] + oy * p.sy[2] + ox * p.sy[3]] = from_acc<T>(acc);
    }
  }
}

// Output tiles of about 1024 pixels (several planes per block when the image is small), shrunk
// until the staged input fits in shared memory.
bool choose_tile(const Upfirdn2dParams& p, int elem_bytes, Tile& t, int& smem) {
  t.out_w = std::min(p.out_w, 64);
  t.out_h = std::min(p.out_h, std::max(1, 1024 / t.out_w));
  t.planes = std::max(1, std::min(p.n * p.c, 1024 / (t.out_w * t.out_h)));
  for (;;) {
    t.in_h = tile_in(t.out_h, p.up_y, p.down_y, p.f_h);
    t.in_w = tile_in(t.out_w, p.up_x, p.down_x, p.f_w);
    smem = (((p.f_h * p.f_w + 3) & ~3) + t.planes * t.in_h * t.in_w) * elem_bytes;
    if (smem <= kSharedBytes) break;
    if (t.planes > 1) t.planes = (t.planes + 1) / 2;
    else if (t.out_h > 1) t.out_h = (t.out_h + 1) / 2;
    else if (t.out_w > 1) t.out_w = (t.out_w + 1) / 2;
    else return false;  // the filter alone does not fit
  }
  t.tiles_x = (p.out_w + t.out_w - 1) / t.out_w;
  t.tiles_y = (p.out_h + t.out_h - 1) / t.out_h;
  return true;
}

// The 4x4 filter at up = down = 1 (the FIR pass after every upsampling transposed conv and before
// every downsampling conv: the largest tensors of both networks) gets a direct kernel instead: no
// shared memory, the 16 taps in registers, and each thread computes kRows consecutive output rows
// of one column, sliding down kRows + 3 input rows (44 loads for 128 multiply-adds instead of 16
// loads and index divisions per output). Consecutive threads take consecutive elements of the
// innermost memory dimension (x for NCHW, c for channels-last), so loads and stores coalesce and
// the horizontally overlapping reads of neighbouring threads hit L1. On an H200 (bench/RESULTS.md)
// it is 2.0-2.1x the tiled kernel above on the generator's shapes; a channels-last variant with
// 16-byte accesses and 8 channels per thread measured 1.9x slower than this one and was dropped.
constexpr int kRows = 8;

// bias_act's forward on one accumulated value (the epilogue; see Upfirdn2dParams).
template <typename A>
__device__ __forceinline__ A epilogue(const Upfirdn2dParams& p, A v, A sc, A bias, A osc) {
  v = act_fwd(p.act, v * sc + bias, A(p.alpha)) * A(p.act_gain);
  const A clamp = A(p.clamp);
  if (clamp >= A(0)) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);
  return v * osc;
}

template <typename T, bool CL>
__global__ void __launch_bounds__(kThreads) fir4_kernel(Upfirdn2dParams p, int row_groups) {
  using A = typename Acc<T>::type;
  A F[4][4];
  const A gain = A(p.gain);
#pragma unroll
  for (int ky = 0; ky < 4; ++ky)
#pragma unroll
    for (int kx = 0; kx < 4; ++kx) {
      const int iy = p.flip ? ky : 3 - ky, ix = p.flip ? kx : 3 - kx;
      F[ky][kx] = A(p.separable ? p.f[iy] * p.f[ix] : p.f[iy * 4 + ix]) * gain;
    }
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  // 32-bit offsets: fir4_applies checked that every element of x and y lies below 2^31
  const int sx0 = int(p.sx[0]), sx1 = int(p.sx[1]), sx2 = int(p.sx[2]), sx3 = int(p.sx[3]);
  const int sy0 = int(p.sy[0]), sy1 = int(p.sy[1]), sy2 = int(p.sy[2]), sy3 = int(p.sy[3]);
  const unsigned total = unsigned(p.n) * unsigned(p.c) * unsigned(row_groups) * unsigned(p.out_w);
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
    unsigned rest = i;
    int n, c, g, ox;
    if constexpr (CL) {  // i = ((n * G + g) * W + ox) * C + c
      c = rest % unsigned(p.c), rest /= unsigned(p.c);
      ox = rest % unsigned(p.out_w), rest /= unsigned(p.out_w);
      g = rest % unsigned(row_groups), n = rest / unsigned(row_groups);
    } else {  // i = ((n * C + c) * G + g) * W + ox
      ox = rest % unsigned(p.out_w), rest /= unsigned(p.out_w);
      g = rest % unsigned(row_groups), rest /= unsigned(row_groups);
      c = rest % unsigned(p.c), n = rest / unsigned(p.c);
    }
    const int oy0 = g * kRows;
    const int iy0 = oy0 - p.pad_y0, ix0 = ox - p.pad_x0;  // output (oy, ox) reads x[oy-pad+ky][ox-pad+kx]
    const T* xp = x + (n * sx0 + c * sx1);
    A acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = A(0);
#pragma unroll
    for (int r = 0; r < kRows + 3; ++r) {
      const int iy = iy0 + r;
      A v[4];
#pragma unroll
      for (int kx = 0; kx < 4; ++kx) {
        const int ix = ix0 + kx;
        const bool in = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
        v[kx] = in ? to_acc(xp[iy * sx2 + ix * sx3]) : A(0);
      }
#pragma unroll
      for (int ky = 0; ky < 4; ++ky) {
        const int o = r - ky;  // this input row is tap ky of output row o
        if (o >= 0 && o < kRows) {
#pragma unroll
          for (int kx = 0; kx < 4; ++kx) acc[o] += F[ky][kx] * v[kx];
        }
      }
    }
    if (p.act > 0) {  // bias_act's forward on the registers: the filtered tensor is never stored
      const T* b = static_cast<const T*>(p.b);
      const T* scale = static_cast<const T*>(p.scale);
      const T* out_scale = static_cast<const T*>(p.out_scale);
      const A sc = scale ? to_acc(scale[n * p.c + c]) : A(1), bias = b ? to_acc(b[c]) : A(0);
      const A osc = out_scale ? to_acc(out_scale[n * p.c + c]) : A(1);
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] = epilogue(p, acc[r], sc, bias, osc);
    }
    T* yp = y + (n * sy0 + c * sy1 + ox * sy3);
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (oy0 + r < p.out_h) yp[(oy0 + r) * sy2] = from_acc<T>(acc[r]);
  }
}

template <typename T>
cudaError_t launch_fir4(const Upfirdn2dParams& p, cudaStream_t stream) {
  const int row_groups = (p.out_h + kRows - 1) / kRows;
  const int64_t total = int64_t(p.n) * p.c * row_groups * p.out_w;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 20);
  // channels-last when C is the innermost dimension of both tensors (and there is more than one)
  const bool cl = p.c > 1 && p.sx[1] == 1 && p.sy[1] == 1;
  void (*kernel)(Upfirdn2dParams, int) = cl ? fir4_kernel<T, true> : fir4_kernel<T, false>;
  SGV_LAUNCH(kernel, static_cast<unsigned>(blocks), kThreads, 0, stream, p, row_groups);
  return cudaGetLastError();
}

int64_t max_offset(const int64_t* s, int n, int c, int h, int w) {
  return (n - 1) * std::abs(s[0]) + (c - 1) * std::abs(s[1]) + (h - 1) * std::abs(s[2]) + (w - 1) * std::abs(s[3]);
}

// Whether the direct kernel takes these parameters (else the tiled kernel does): a 4x4 filter without
// resampling, with 32-bit offsets. Measured 1.5-2.1x faster than the tiled kernel there (H200).
bool fir4_applies(const Upfirdn2dParams& p) {
  constexpr int64_t kMax = int64_t(1) << 31;
  const int64_t total = int64_t(p.n) * p.c * ((p.out_h + kRows - 1) / kRows) * p.out_w;
  return p.up_x == 1 && p.up_y == 1 && p.down_x == 1 && p.down_y == 1 && p.f_h == 4 && p.f_w == 4 &&
         total < kMax && max_offset(p.sx, p.n, p.c, p.in_h, p.in_w) < kMax &&
         max_offset(p.sy, p.n, p.c, p.out_h, p.out_w) < kMax;
}

template <typename T>
cudaError_t launch_typed(const Upfirdn2dParams& p, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  if (fir4_applies(p)) return launch_fir4<T>(p, stream);
  Tile t;
  int smem = 0;
  if (!choose_tile(p, sizeof(A), t, smem)) return cudaErrorInvalidConfiguration;
  const int64_t plane_blocks = (int64_t(p.n) * p.c + t.planes - 1) / t.planes;
  if (plane_blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(plane_blocks), static_cast<unsigned>(std::min(t.tiles_x * t.tiles_y, 65535)));
  const bool sq = p.up_x == p.up_y && p.down_x == p.down_y && p.f_h == 4 && p.f_w == 4;
  void (*kernel)(Upfirdn2dParams, Tile) = upfirdn2d_kernel<T, 0, 0, 0, 0>;
  if (sq && p.up_x == 1 && p.down_x == 1) kernel = upfirdn2d_kernel<T, 1, 1, 4, 4>;
  if (sq && p.up_x == 2 && p.down_x == 1) kernel = upfirdn2d_kernel<T, 2, 1, 4, 4>;
  if (sq && p.up_x == 1 && p.down_x == 2) kernel = upfirdn2d_kernel<T, 1, 2, 4, 4>;
  SGV_LAUNCH(kernel, grid, kThreads, smem, stream, p, t);
  return cudaGetLastError();
}

}  // namespace

namespace {

cudaError_t launch_dtype(const Upfirdn2dParams& p, int dtype, cudaStream_t stream) {
  switch (dtype) {
    case kFloat32: return launch_typed<float>(p, stream);
    case kFloat16: return launch_typed<__half>(p, stream);
    case kBFloat16: return launch_typed<__nv_bfloat16>(p, stream);
    case kFloat64: return launch_typed<double>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t upfirdn2d_launch(const Upfirdn2dParams& p, int dtype, cudaStream_t stream) {
  if (int64_t(p.n) * p.c * p.out_h * p.out_w == 0) return cudaSuccess;
  if (p.act <= 0 || fir4_applies(p)) return launch_dtype(p, dtype, stream);
  // The tiled kernel has no epilogue: filter, then bias_act in place on the output (y is dense).
  Upfirdn2dParams plain = p;
  plain.act = 0;
  const cudaError_t err = launch_dtype(plain, dtype, stream);
  if (err != cudaSuccess) return err;
  BiasActParams q;
  q.x = p.y;
  q.y = p.y;
  q.b = p.b;
  q.numel = int64_t(p.n) * p.c * p.out_h * p.out_w;
  q.size_b = p.c;
  q.step_b = p.c > 1 ? p.sy[1] : 1;
  q.step_n = p.sy[0];
  q.scale = p.scale;
  q.out_scale = p.out_scale;
  q.act = p.act;
  q.alpha = p.alpha;
  q.gain = p.act_gain;
  q.clamp = p.clamp;
  return bias_act_launch(q, dtype, stream);
}

}  // namespace sgv
