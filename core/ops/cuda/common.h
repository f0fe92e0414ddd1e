// Shared declarations between the torch-facing bindings (ops.cpp) and the kernels (*.cu).
// The .cu files include no torch headers, so they compile quickly with plain nvcc.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace sgv {

// The grid of a grid-stride kernel: enough blocks for `needed`, at most `cap`. The host emulation's tests
// lower every cap (emu_grid_cap, sgv_emu_set_grid_cap) so that each grid-stride loop, and the barriers
// at the end of its turns, runs several times on small tensors, as on a GPU at the model's real shapes.
#ifdef SGV_HOST_EMULATION
inline int emu_grid_cap = 0;
#endif
inline int64_t grid_blocks(int64_t needed, int64_t cap) {
#ifdef SGV_HOST_EMULATION
  if (emu_grid_cap > 0 && emu_grid_cap < cap) cap = emu_grid_cap;
#endif
  return needed < 1 ? 1 : (needed < cap ? needed : cap);
}

// Element types the kernels are instantiated for.
enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

// Fused bias + activation + gain + clamp over a dense tensor walked in memory order.
//   mode 0: y = clamp(act(x + b) * gain)                        (forward)
//   mode 1: y = x * gain * act'(v) * mask                      (x holds dL/dy; first-order grad)
//   mode 2: y = x * dyref * gain * act''(v) * mask             (x holds d/d(dx); second-order grad)
// where v = xref + b when xref is given (else act' is read off yref = the forward output) and
// mask zeroes the gradient where the forward output was clamped. In mode 0 an optional `scale`
// [N, size_b] multiplies x first: y = clamp(act(x * scale[n, c] + b) * gain), n the index along the
// outermost dimension (memory stride step_n): a modulated conv's demodulation fused into this pass;
// an optional `out_scale` [N, size_b] multiplies the clamped output (the next modulated conv's
// input modulation).
struct BiasActParams {
  const void* x = nullptr;
  const void* b = nullptr;      // [size_b] or nullptr
  const void* xref = nullptr;   // forward input, same layout as x, or nullptr
  const void* yref = nullptr;   // forward output, same layout as x, or nullptr
  const void* dyref = nullptr;  // first-order incoming gradient (mode 2 only)
  void* y = nullptr;
  int64_t numel = 0;
  int64_t step_b = 1;  // memory stride of the bias dimension
  int64_t size_b = 1;  // length of the bias dimension
  const void* scale = nullptr;      // [N, size_b] contiguous, mode 0 only, or nullptr
  const void* out_scale = nullptr;  // [N, size_b] contiguous, mode 0 only, or nullptr
  int64_t step_n = 1;           // memory stride of the outermost (sample) dimension
  int act = 1;         // index as in core/ops/bias_act.py ACTIVATIONS[...].cuda_idx
  int mode = 0;
  double alpha = 0.0, gain = 1.0, clamp = -1.0;  // clamp < 0: no clamping (double: exact for float64)
};

// Pad, upsample by zero insertion, correlate with the (flipped unless flip) FIR filter times gain,
// keep every down-th pixel. Arbitrary element strides for x and y; f is float32 contiguous,
// [f_h] taps when separable (the 2-D filter is then the outer product), else [f_h, f_w].
struct Upfirdn2dParams {
  const void* x = nullptr;
  const float* f = nullptr;
  void* y = nullptr;
  int64_t sx[4] = {0, 0, 0, 0};  // x strides (N, C, H, W), in elements
  int64_t sy[4] = {0, 0, 0, 0};  // y strides
  int n = 0, c = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int up_x = 1, up_y = 1, down_x = 1, down_y = 1, pad_x0 = 0, pad_y0 = 0;
  int f_h = 1, f_w = 1;
  bool separable = false, flip = false;
  double gain = 1.0;
  // Optional epilogue, bias_act's forward (mode 0) in the same pass, when act > 0: the filtered value v
  // becomes clamp(act(v * scale[n, c] + b[c]) * act_gain) * out_scale[n, c]. b, scale and out_scale
  // have x's dtype and are contiguous ([C], [N, C], [N, C]) or nullptr (then 0, 1, 1).
  int act = 0;  // 0: no epilogue; else as BiasActParams::act
  const void* b = nullptr;
  const void* scale = nullptr;
  const void* out_scale = nullptr;
  double alpha = 0.0, act_gain = 1.0, clamp = -1.0;  // clamp < 0: no clamping
};

// Per-sample modulated, demodulated conv weights (modulate_weight.cu): y[n, o, i, k] =
// w[o, i, k] * s'[n, i] * d[n, o], s' = s / max_i |s[n, i]| if norm_styles else s, d[n, o] =
// rsqrt(sum_i s'[n, i]^2 * wsq[o, i] + eps) if wsq else 1. w, wsq, s are float32 and contiguous; w and
// y share the per-filter layout: k-major [I, K] (i_inner false) or i-major [K, I] (i_inner true, the
// channels-last conv weight), y [N, O, ...] in the output dtype.
struct ModulateWeightParams {
  const float* w = nullptr;    // [O, I * K]
  const float* wsq = nullptr;  // [O, I] or nullptr (no demodulation)
  const float* s = nullptr;    // [N, I]
  void* y = nullptr;           // [N, O, I * K]
  int n = 0, c_out = 0, c_in = 0, taps = 1;
  bool i_inner = false, norm_styles = false;
  float eps = 1e-8f;
};

// The shared modulated conv's coefficients (modulate_weight.cu): with s' as above, d[n, o] (eq. 3) when
// wsq_t ([I, O], wsq transposed) is given, and s'[n, :] into s_out when given; both in the output dtype.
struct ModulationCoefsParams {
  const float* s = nullptr;      // [N, I]
  const float* wsq_t = nullptr;  // [I, O] or nullptr
  void* d = nullptr;             // [N, O] (with wsq_t)
  void* s_out = nullptr;         // [N, I] or nullptr
  int n = 0, c_in = 0, c_out = 0;
  bool norm_styles = false;
  float eps = 1e-8f;
};

// bias_act with toRGB as its epilogue (torgb.cu), forward only: for every pixel of plane (n, g) of x
// [B, G*C, H, W] (strides sx, in elements) with channel c of group g at g*C + c:
//   u_c = clamp(act(x * scale[n, gC+c] + b[gC+c]) * gain)        (bias_act's mode 0, rounded to x's dtype)
//   y   = u_c * out_scale[n, gC+c]                                (out_scale: the next conv's input modulation)
//   img[n, g*R + r] = skip[n, g*R + r] + clamp_rgb(sum_c rgb_w[r, c] * rgb_s[n or 0, g, c] * u_c + rgb_b[r])
// (toRGB's modulated 1x1 weights, eq. 1 without demodulation: the weight times the styles).
// b, scale, out_scale have x's dtype and are contiguous ([G*C], [B, G*C], [B, G*C]) or nullptr (0, 1, 1);
// rgb_w, rgb_s, rgb_b, skip and img are float32 contiguous ([R, C], [B or 1, G, C], [R], [B, G*R, H, W] x2).
struct BiasActToRGBParams {
  const void* x = nullptr;
  void* y = nullptr;
  int64_t sx[4] = {0, 0, 0, 0};  // x strides (N, C, H, W), in elements
  int64_t sy[4] = {0, 0, 0, 0};  // y strides
  int batch = 0, groups = 1, c = 0, h = 0, w = 0, rgb_c = 3;
  const void* b = nullptr;
  const void* scale = nullptr;
  const void* out_scale = nullptr;
  int act = 3;  // as BiasActParams::act
  double alpha = 0.0, gain = 1.0, clamp = -1.0;  // clamp < 0: no clamping
  const float* rgb_w = nullptr;
  const float* rgb_s = nullptr;
  bool rgb_s_shared = false;  // one row of rgb_s for the whole batch (the frame-major layout's videos)
  const float* rgb_b = nullptr;
  double rgb_clamp = -1.0;
  const float* skip = nullptr;
  float* img = nullptr;
};

// Motion noise tokens (motion.cu): y[m, l, :] = core.noise.token_noise(seeds[sample[m]], start[m] + l,
// dim) for the windows m < windows, l < length; sample nullptr means sample[m] = m. A sample index
// outside [0, num_seeds) yields NaN tokens (no device-side abort).
struct TokenNoiseParams {
  const int64_t* seeds = nullptr;   // [num_seeds]
  const int64_t* sample = nullptr;  // [windows] or nullptr
  const int64_t* start = nullptr;   // [windows]
  float* y = nullptr;               // [windows, length, dim]
  int64_t num_seeds = 0, windows = 0, length = 0, dim = 0;
};

// The acyclic positional encoding v_t (motion.cu; core/motion.py AlignedTimeEncoder, eqs. 2-5) of `frames`
// times t (float32 or float64) from the predictors' outputs: scale_logits / phase_logits [frames, F] (before
// tanh + 1 / times phase_scales), aligners_left / aligners_right [frames, 2F]; all float32 and contiguous.
struct TimeEncodingParams {
  const void* t = nullptr;  // [frames], float64 if t_double else float32
  const float* scale_logits = nullptr;
  const float* phase_logits = nullptr;
  const float* aligners_left = nullptr;
  const float* aligners_right = nullptr;
  const float* freqs = nullptr;         // [F]
  const float* phase_scales = nullptr;  // [F]
  float* v = nullptr;                   // [frames, 2F]
  int64_t frames = 0, freqs_n = 0;
  int delta_z = 1;
  bool t_double = true, exact = true;
};

cudaError_t bias_act_launch(const BiasActParams& p, int dtype, cudaStream_t stream);
cudaError_t upfirdn2d_launch(const Upfirdn2dParams& p, int dtype, cudaStream_t stream);
cudaError_t modulate_weight_launch(const ModulateWeightParams& p, int dtype, cudaStream_t stream);
cudaError_t modulation_coefs_launch(const ModulationCoefsParams& p, int dtype, cudaStream_t stream);
cudaError_t bias_act_torgb_launch(const BiasActToRGBParams& p, int dtype, cudaStream_t stream);
cudaError_t token_noise_launch(const TokenNoiseParams& p, cudaStream_t stream);
cudaError_t time_encoding_launch(const TimeEncodingParams& p, cudaStream_t stream);

}  // namespace sgv
