// Shared declarations between the torch-facing bindings (ops.cpp) and the kernels (*.cu).
// The .cu files include no torch headers, so they compile quickly with plain nvcc.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace sgv {

// Element types the kernels are instantiated for.
enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

// The model's two activations, the ones the kernels implement (codes: functions.py KERNEL_ACTS).
enum Act : int { kLinear = 1, kLrelu = 3 };

// Fused bias + activation + gain + clamp over a dense tensor walked in memory order.
//   mode 0: y = clamp(act(x + b) * gain)                        (forward)
//   mode 1: y = x * gain * act'(yref) * mask                   (x holds dL/dy; the gradient)
// where yref is the forward output (for linear and leaky ReLU act' is read off its sign; act'' is
// zero, so mode 1 differentiates to itself) and mask zeroes the gradient where it was clamped. In mode 0 an optional `scale`
// [N, size_b] multiplies x first: y = clamp(act(x * scale[n, c] + b) * gain), n the index along the
// outermost dimension (memory stride step_n): a modulated conv's demodulation fused into this pass;
// an optional `out_scale` [N, size_b] multiplies the clamped output (the next modulated conv's
// input modulation).
struct BiasActParams {
  const void* x = nullptr;
  const void* b = nullptr;      // [size_b] or nullptr
  const void* yref = nullptr;   // forward output, same layout as x, or nullptr
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

cudaError_t bias_act_launch(const BiasActParams& p, int dtype, cudaStream_t stream);
cudaError_t upfirdn2d_launch(const Upfirdn2dParams& p, int dtype, cudaStream_t stream);

}  // namespace sgv
