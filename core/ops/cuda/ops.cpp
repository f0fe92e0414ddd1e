// Torch bindings of the kernels: argument checks, output allocation, stream and device handling.
// Called from core/ops/cuda/functions.py only; see there for the autograd wiring.
//
// With SGV_HOST_EMULATION defined (host_ops.cpp, for the CPU tests) the same bindings take CPU tensors
// and launch the kernels' host emulation: the tests then run this file's checks and parameter
// marshalling too, not a copy of them.

#include <optional>
#include <string>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>
#ifndef SGV_HOST_EMULATION
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "common.h"

namespace {

#ifdef SGV_HOST_EMULATION
#define SGV_DISPATCH_KEY CPU
bool on_device(const at::Tensor& t) { return t.is_cpu(); }
// The launch's device and stream: none on the host.
struct DeviceScope {
  explicit DeviceScope(c10::Device) {}
  cudaStream_t stream() const { return nullptr; }
};
std::string error_string(cudaError_t err) { return "emulated launch error " + std::to_string(int(err)); }
#else
#define SGV_DISPATCH_KEY CUDA
bool on_device(const at::Tensor& t) { return t.is_cuda(); }
// The launch's device (made current for its lifetime) and that device's current stream.
struct DeviceScope {
  c10::cuda::CUDAGuard guard;
  explicit DeviceScope(c10::Device device) : guard(device) {}
  cudaStream_t stream() const { return c10::cuda::getCurrentCUDAStream(); }
};
std::string error_string(cudaError_t err) { return cudaGetErrorString(err); }
#endif

int dtype_code(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat: return sgv::kFloat32;
    case at::kHalf: return sgv::kFloat16;
    case at::kBFloat16: return sgv::kBFloat16;
    case at::kDouble: return sgv::kFloat64;
    default: TORCH_CHECK(false, "sgv ops: unsupported dtype ", x.scalar_type());
  }
  return -1;
}

void check_like(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.device() == x.device(), "bias_act: ", name, " is on ", t.device(), ", x on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bias_act: ", name, " dtype ", t.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  bool same = t.sizes() == x.sizes();
  for (int64_t i = 0; same && i < x.dim(); ++i) same = x.size(i) == 1 || t.stride(i) == x.stride(i);
  TORCH_CHECK(same, "bias_act: ", name, " must have the shape and memory layout of x");
}

// See sgv::BiasActParams for the meaning of mode and of the reference tensors.
at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& xref,
                    const std::optional<at::Tensor>& yref, const std::optional<at::Tensor>& dyref, int64_t mode,
                    int64_t dim, int64_t act, double alpha, double gain, double clamp,
                    const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& out_scale) {
  TORCH_CHECK(on_device(x), "bias_act: x must be a CUDA tensor");
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous in some memory format)");
  TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: mode must be 0, 1 or 2");
  TORCH_CHECK(x.numel() == 0 || (dim >= 0 && dim < x.dim()), "bias_act: dim out of range");
  const int code = dtype_code(x);
  sgv::BiasActParams p;
  if (b && b->defined()) {
    TORCH_CHECK(on_device(*b) && b->device() == x.device(), "bias_act: b must be on x's device");
    TORCH_CHECK(b->scalar_type() == x.scalar_type(), "bias_act: b must have x's dtype");
    TORCH_CHECK(b->dim() == 1 && b->size(0) == x.size(dim) && b->is_contiguous(),
                "bias_act: b must be contiguous with shape [x.shape[dim]]");
    p.b = b->data_ptr();
    p.size_b = x.size(dim);
    p.step_b = x.size(dim) > 1 ? x.stride(dim) : 1;
  }
  for (const auto* sc : {&scale, &out_scale}) {
    if (!*sc || !(*sc)->defined()) continue;
    const at::Tensor& t = **sc;
    TORCH_CHECK(mode == 0, "bias_act: scale and out_scale are for the forward pass (mode 0) only");
    TORCH_CHECK(x.dim() >= 2 && dim > 0, "bias_act: scales need a sample dimension 0 and dim > 0");
    TORCH_CHECK(on_device(t) && t.device() == x.device() && t.scalar_type() == x.scalar_type(),
                "bias_act: scales must be on x's device with x's dtype");
    TORCH_CHECK(t.dim() == 2 && t.size(0) == x.size(0) && t.size(1) == x.size(dim) && t.is_contiguous(),
                "bias_act: scales must be contiguous [x.shape[0], x.shape[dim]]");
    TORCH_CHECK(x.size(0) == 1 || x.stride(0) * x.size(0) == x.numel(),
                "bias_act: with scales, dimension 0 of x must be outermost in memory");
    (sc == &scale ? p.scale : p.out_scale) = t.data_ptr();
    p.step_n = x.size(0) > 1 ? x.stride(0) : x.numel();
    p.size_b = x.size(dim);
    p.step_b = x.size(dim) > 1 ? x.stride(dim) : 1;
  }
  for (const auto* ref : {&xref, &yref, &dyref})
    if (*ref && (*ref)->defined()) check_like(**ref, x, "a reference tensor");
  const auto ptr = [](const std::optional<at::Tensor>& t) -> const void* {
    return (t && t->defined()) ? t->data_ptr() : nullptr;
  };
  p.xref = ptr(xref);
  p.yref = ptr(yref);
  p.dyref = ptr(dyref);
  TORCH_CHECK(mode != 2 || (p.xref && p.dyref), "bias_act: mode 2 needs xref and dyref");
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  p.x = x.data_ptr();
  p.y = y.data_ptr();
  p.numel = x.numel();
  p.act = static_cast<int>(act);
  p.mode = static_cast<int>(mode);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  const DeviceScope scope(x.device());
  const cudaError_t err = sgv::bias_act_launch(p, code, scope.stream());
  TORCH_CHECK(err == cudaSuccess, "bias_act kernel failed: ", error_string(err));
  return y;
}

// f: float32 [taps] (separable) or [fh, fw], correlation taps are taken flipped unless flip.
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip,
                     double gain, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& scale,
                     const std::optional<at::Tensor>& out_scale, int64_t act, double alpha, double act_gain,
                     double clamp) {
  TORCH_CHECK(on_device(x) && x.dim() == 4, "upfirdn2d: x must be a CUDA tensor [N, C, H, W]");
  TORCH_CHECK(on_device(f) && f.device() == x.device(), "upfirdn2d: f must be on x's device");
  TORCH_CHECK(f.scalar_type() == at::kFloat && (f.dim() == 1 || f.dim() == 2) && f.is_contiguous(),
              "upfirdn2d: f must be contiguous float32 [taps] or [fh, fw]");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up/down must be >= 1");
  TORCH_CHECK(x.numel() < (int64_t(1) << 31), "upfirdn2d: x is too large for 32-bit indexing of planes");
  const int code = dtype_code(x);
  sgv::Upfirdn2dParams p;
  p.n = static_cast<int>(x.size(0));
  p.c = static_cast<int>(x.size(1));
  p.in_h = static_cast<int>(x.size(2));
  p.in_w = static_cast<int>(x.size(3));
  p.f_h = static_cast<int>(f.size(0));
  p.f_w = static_cast<int>(f.size(f.dim() - 1));
  p.separable = f.dim() == 1;
  p.up_x = static_cast<int>(up_x);
  p.up_y = static_cast<int>(up_y);
  p.down_x = static_cast<int>(down_x);
  p.down_y = static_cast<int>(down_y);
  p.pad_x0 = static_cast<int>(pad_x0);
  p.pad_y0 = static_cast<int>(pad_y0);
  p.flip = flip;
  p.gain = gain;
  const int64_t out_h = (int64_t(p.in_h) * up_y + pad_y0 + pad_y1 - p.f_h + down_y) / down_y;
  const int64_t out_w = (int64_t(p.in_w) * up_x + pad_x0 + pad_x1 - p.f_w + down_x) / down_x;
  TORCH_CHECK(out_h >= 1 && out_w >= 1, "upfirdn2d: the padding and filter leave an empty output");
  p.out_h = static_cast<int>(out_h);
  p.out_w = static_cast<int>(out_w);
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(x.suggest_memory_format()));
  for (int i = 0; i < 4; ++i) {
    p.sx[i] = x.stride(i);
    p.sy[i] = y.stride(i);
  }
  p.x = x.data_ptr();
  p.f = f.data_ptr<float>();
  p.y = y.data_ptr();
  // Optional bias_act epilogue (act > 0): b [C], scale / out_scale [N, C], x's dtype, contiguous.
  p.act = static_cast<int>(act);
  p.alpha = alpha;
  p.act_gain = act_gain;
  p.clamp = clamp;
  const std::optional<at::Tensor>* extras[] = {&b, &scale, &out_scale};
  const void** slots[] = {&p.b, &p.scale, &p.out_scale};
  for (int i = 0; i < 3; ++i) {
    const auto& t = *extras[i];
    if (!t || !t->defined()) continue;
    TORCH_CHECK(act > 0, "upfirdn2d: b, scale and out_scale need an activation (act > 0)");
    TORCH_CHECK(t->device() == x.device() && t->scalar_type() == x.scalar_type() && t->is_contiguous(),
                "upfirdn2d: b, scale and out_scale must be contiguous, on x's device, with x's dtype");
    const bool shape_ok = i == 0 ? (t->dim() == 1 && t->size(0) == x.size(1))
                                 : (t->dim() == 2 && t->size(0) == x.size(0) && t->size(1) == x.size(1));
    TORCH_CHECK(shape_ok, "upfirdn2d: b must be [C] and scale / out_scale [N, C]");
    *slots[i] = t->data_ptr();
  }
  TORCH_CHECK(act == 0 || y.is_non_overlapping_and_dense(), "upfirdn2d: the epilogue needs a dense output");
  const DeviceScope scope(x.device());
  const cudaError_t err = sgv::upfirdn2d_launch(p, code, scope.stream());
  TORCH_CHECK(err == cudaSuccess, "upfirdn2d kernel failed: ", error_string(err));
  return y;
}

// w float32 [O, I, kh, kw], dense in the contiguous or channels-last format (y gets the same one);
// wsq float32 [O, I] contiguous or none (no demodulation); styles float32 [N, I] contiguous.
// Returns the N samples' modulated weights [N * O, I, kh, kw] in `dtype` (see ModulateWeightParams).
at::Tensor modulate_weight(const at::Tensor& w, const std::optional<at::Tensor>& wsq, const at::Tensor& styles,
                           bool norm_styles, at::ScalarType dtype) {
  TORCH_CHECK(on_device(w) && w.dim() == 4 && w.scalar_type() == at::kFloat,
              "modulate_weight: w must be a float32 CUDA tensor [O, I, kh, kw]");
  const bool cl = !w.is_contiguous() && w.is_contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_CHECK(cl || w.is_contiguous(), "modulate_weight: w must be contiguous or channels-last");
  TORCH_CHECK(styles.device() == w.device() && styles.scalar_type() == at::kFloat && styles.dim() == 2 &&
              styles.size(1) == w.size(1) && styles.is_contiguous(),
              "modulate_weight: styles must be contiguous float32 [N, I] on w's device");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "modulate_weight: dtype must be float32, float16 or bfloat16");
  TORCH_CHECK(w.size(1) <= 8192, "modulate_weight: at most 8192 input channels (shared memory)");
  const int64_t n = styles.size(0), c_out = w.size(0), c_in = w.size(1), kh = w.size(2), kw = w.size(3);
  TORCH_CHECK(c_in * kh * kw < (int64_t(1) << 30) && n * c_out < (int64_t(1) << 31),
              "modulate_weight: a filter exceeds 2^30 weights or there are 2^31 filters or more");
  sgv::ModulateWeightParams p;
  if (wsq && wsq->defined()) {
    TORCH_CHECK(wsq->device() == w.device() && wsq->scalar_type() == at::kFloat && wsq->is_contiguous() &&
                wsq->dim() == 2 && wsq->size(0) == c_out && wsq->size(1) == c_in,
                "modulate_weight: wsq must be contiguous float32 [O, I] on w's device");
    p.wsq = wsq->data_ptr<float>();
  }
  const auto format = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor y = at::empty({n * c_out, c_in, kh, kw}, w.options().dtype(dtype).memory_format(format));
  p.w = w.data_ptr<float>();
  p.s = styles.data_ptr<float>();
  p.y = y.data_ptr();
  p.n = static_cast<int>(n);
  p.c_out = static_cast<int>(c_out);
  p.c_in = static_cast<int>(c_in);
  p.taps = static_cast<int>(kh * kw);
  p.i_inner = cl;
  p.norm_styles = norm_styles;
  const DeviceScope scope(w.device());
  const cudaError_t err = sgv::modulate_weight_launch(p, dtype_code(y), scope.stream());
  TORCH_CHECK(err == cudaSuccess, "modulate_weight kernel failed: ", error_string(err));
  return y;
}

// The shared modulated conv's coefficients from float32 styles [N, I] (see ModulationCoefsParams):
// returns (d [N, O], s' [N, I]) in `dtype`; d is empty without wsq_t ([I, O]), s' without want_styles.
std::tuple<at::Tensor, at::Tensor> modulation_coefs(const at::Tensor& styles, const std::optional<at::Tensor>& wsq_t,
                                                    bool norm_styles, at::ScalarType dtype, bool want_styles) {
  TORCH_CHECK(on_device(styles) && styles.scalar_type() == at::kFloat && styles.dim() == 2 && styles.is_contiguous(),
              "modulation_coefs: styles must be a contiguous float32 CUDA tensor [N, I]");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "modulation_coefs: dtype must be float32, float16 or bfloat16");
  TORCH_CHECK(styles.size(1) <= 8192, "modulation_coefs: at most 8192 input channels (shared memory)");
  const int64_t n = styles.size(0), c_in = styles.size(1);
  sgv::ModulationCoefsParams p;
  at::Tensor d = at::empty({0}, styles.options().dtype(dtype)), s_out = at::empty({0}, styles.options().dtype(dtype));
  if (wsq_t && wsq_t->defined()) {
    TORCH_CHECK(wsq_t->device() == styles.device() && wsq_t->scalar_type() == at::kFloat && wsq_t->dim() == 2 &&
                wsq_t->size(0) == c_in && wsq_t->is_contiguous(),
                "modulation_coefs: wsq_t must be contiguous float32 [I, O] on the styles' device");
    d = at::empty({n, wsq_t->size(1)}, styles.options().dtype(dtype));
    p.wsq_t = wsq_t->data_ptr<float>();
    p.d = d.data_ptr();
    p.c_out = static_cast<int>(wsq_t->size(1));
  }
  if (want_styles) {
    s_out = at::empty({n, c_in}, styles.options().dtype(dtype));
    p.s_out = s_out.data_ptr();
  }
  p.s = styles.data_ptr<float>();
  p.n = static_cast<int>(n);
  p.c_in = static_cast<int>(c_in);
  p.norm_styles = norm_styles;
  const DeviceScope scope(styles.device());
  const cudaError_t err = sgv::modulation_coefs_launch(p, dtype_code(d), scope.stream());
  TORCH_CHECK(err == cudaSuccess, "modulation_coefs kernel failed: ", error_string(err));
  return {d, s_out};
}

// bias_act (mode 0) of x [B, G*C, H, W] (any dense layout; y gets x's) with toRGB as its epilogue (see
// BiasActToRGBParams): rgb_w float32 [R, C] and rgb_s float32 [B or 1, G, C], contiguous, give R, G and C;
// b [G*C], scale and out_scale [B, G*C] in x's dtype, contiguous; rgb_b float32 [R]; skip float32
// [B, G*R, H, W] contiguous.
// Returns (y, img float32 [B, G*R, H, W]).
std::tuple<at::Tensor, at::Tensor> bias_act_torgb(const at::Tensor& x, const std::optional<at::Tensor>& b,
                                                  const std::optional<at::Tensor>& scale,
                                                  const std::optional<at::Tensor>& out_scale, int64_t act,
                                                  double alpha, double gain, double clamp, const at::Tensor& rgb_w,
                                                  const at::Tensor& rgb_s,
                                                  const std::optional<at::Tensor>& rgb_b, double rgb_clamp,
                                                  const std::optional<at::Tensor>& skip) {
  TORCH_CHECK(on_device(x) && x.dim() == 4 && x.is_non_overlapping_and_dense(),
              "bias_act_torgb: x must be a dense 4-D CUDA tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16,
              "bias_act_torgb: x must be float32, float16 or bfloat16");
  TORCH_CHECK(rgb_w.device() == x.device() && rgb_w.scalar_type() == at::kFloat && rgb_w.dim() == 2 &&
                  rgb_w.is_contiguous(),
              "bias_act_torgb: rgb_w must be contiguous float32 [R, C] on x's device");
  TORCH_CHECK(rgb_s.device() == x.device() && rgb_s.scalar_type() == at::kFloat && rgb_s.dim() == 3 &&
                  rgb_s.is_contiguous() && (rgb_s.size(0) == 1 || rgb_s.size(0) == x.size(0)) &&
                  rgb_s.size(2) == rgb_w.size(1),
              "bias_act_torgb: rgb_s must be contiguous float32 [B or 1, G, C] on x's device");
  const int64_t batch = x.size(0), groups = rgb_s.size(1), rgb_c = rgb_w.size(0), c = rgb_w.size(1);
  const int64_t h = x.size(2), w = x.size(3);
  TORCH_CHECK(groups * c == x.size(1), "bias_act_torgb: rgb_s's G * C must be x's channel count");
  TORCH_CHECK(rgb_c >= 1 && rgb_c <= 4, "bias_act_torgb: 1 to 4 output channels");
  TORCH_CHECK((rgb_c + 3) * c * 4 <= 48 * 1024, "bias_act_torgb: too many channels per group (shared memory)");
  TORCH_CHECK(h * w < (int64_t(1) << 31) && batch * groups * h * w < (int64_t(1) << 40),
              "bias_act_torgb: x is too large");
  const auto check_operand = [&](const std::optional<at::Tensor>& t, int64_t rows, const char* name) -> const void* {
    if (!t || !t->defined()) return nullptr;
    TORCH_CHECK(t->device() == x.device() && t->scalar_type() == x.scalar_type() && t->is_contiguous() &&
                    t->numel() == rows * x.size(1),
                "bias_act_torgb: ", name, " must be contiguous in x's dtype with ", rows, " x ", x.size(1),
                " values on x's device");
    return t->data_ptr();
  };
  sgv::BiasActToRGBParams p;
  p.b = check_operand(b, 1, "b");
  p.scale = check_operand(scale, batch, "scale");
  p.out_scale = check_operand(out_scale, batch, "out_scale");
  if (rgb_b && rgb_b->defined()) {
    TORCH_CHECK(rgb_b->device() == x.device() && rgb_b->scalar_type() == at::kFloat && rgb_b->is_contiguous() &&
                    rgb_b->numel() == rgb_c,
                "bias_act_torgb: rgb_b must be contiguous float32 [R] on x's device");
    p.rgb_b = rgb_b->data_ptr<float>();
  }
  if (skip && skip->defined()) {
    TORCH_CHECK(skip->device() == x.device() && skip->scalar_type() == at::kFloat && skip->is_contiguous() &&
                    skip->dim() == 4 && skip->size(0) == batch && skip->size(1) == groups * rgb_c &&
                    skip->size(2) == h && skip->size(3) == w,
                "bias_act_torgb: skip must be contiguous float32 [B, G*R, H, W] on x's device");
    p.skip = skip->data_ptr<float>();
  }
  at::Tensor y = at::empty_like(x, x.suggest_memory_format());
  at::Tensor img = at::empty({batch, groups * rgb_c, h, w}, x.options().dtype(at::kFloat));
  p.x = x.data_ptr();
  p.y = y.data_ptr();
  for (int i = 0; i < 4; ++i) {
    p.sx[i] = x.stride(i);
    p.sy[i] = y.stride(i);
  }
  p.batch = static_cast<int>(batch);
  p.groups = static_cast<int>(groups);
  p.c = static_cast<int>(c);
  p.h = static_cast<int>(h);
  p.w = static_cast<int>(w);
  p.rgb_c = static_cast<int>(rgb_c);
  p.act = static_cast<int>(act);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  p.rgb_w = rgb_w.data_ptr<float>();
  p.rgb_s = rgb_s.data_ptr<float>();
  p.rgb_s_shared = rgb_s.size(0) == 1 && batch > 1;
  p.rgb_clamp = rgb_clamp;
  p.img = img.data_ptr<float>();
  const DeviceScope scope(x.device());
  const cudaError_t err = sgv::bias_act_torgb_launch(p, dtype_code(x), scope.stream());
  TORCH_CHECK(err == cudaSuccess, "bias_act_torgb kernel failed: ", error_string(err));
  return {y, img};
}

// Motion noise tokens of `length` consecutive tokens from start[m] for video sample[m] (all int64, 1-D,
// contiguous, on one CUDA device; sample none: window m is video m) -> float32 [M, length, dim].
at::Tensor token_noise(const at::Tensor& seeds, const std::optional<at::Tensor>& sample, const at::Tensor& start,
                       int64_t length, int64_t dim) {
  const auto check = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(on_device(t) && t.device() == start.device() && t.scalar_type() == at::kLong && t.dim() == 1 &&
                    t.is_contiguous(),
                "token_noise: ", name, " must be a contiguous 1-D int64 tensor on start's CUDA device");
  };
  check(seeds, "seeds");
  check(start, "start");
  const int64_t windows = start.size(0);
  if (sample && sample->defined()) {
    check(*sample, "sample");
    TORCH_CHECK(sample->size(0) == windows, "token_noise: sample and start must have the same length");
  } else {
    TORCH_CHECK(seeds.size(0) == windows, "token_noise: without sample, one seed per window");
  }
  TORCH_CHECK(length >= 0 && dim >= 0, "token_noise: length and dim must be >= 0");
  at::Tensor y = at::empty({windows, length, dim}, start.options().dtype(at::kFloat));
  sgv::TokenNoiseParams p;
  p.seeds = seeds.data_ptr<int64_t>();
  p.sample = sample && sample->defined() ? sample->data_ptr<int64_t>() : nullptr;
  p.start = start.data_ptr<int64_t>();
  p.y = y.data_ptr<float>();
  p.num_seeds = seeds.size(0);
  p.windows = windows;
  p.length = length;
  p.dim = dim;
  const DeviceScope scope(start.device());
  const cudaError_t err = sgv::token_noise_launch(p, scope.stream());
  TORCH_CHECK(err == cudaSuccess, "token_noise kernel failed: ", error_string(err));
  return y;
}

// v_t [frames, 2F] float32 from t [frames] (float32 / float64) and the predictors' float32 outputs (see
// TimeEncodingParams); freqs / phase_scales [F] or [1, F].
at::Tensor time_encoding(const at::Tensor& t, const at::Tensor& scale_logits, const at::Tensor& phase_logits,
                         const at::Tensor& aligners_left, const at::Tensor& aligners_right, const at::Tensor& freqs,
                         const at::Tensor& phase_scales, int64_t delta_z, bool exact) {
  TORCH_CHECK(on_device(t) && t.dim() == 1 && t.is_contiguous() &&
                  (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble),
              "time_encoding: t must be a contiguous 1-D float32 / float64 CUDA tensor");
  const int64_t frames = t.size(0), num_f = freqs.numel();
  const auto check = [&](const at::Tensor& x, int64_t cols, const char* name) {
    TORCH_CHECK(x.device() == t.device() && x.scalar_type() == at::kFloat && x.is_contiguous() &&
                    x.numel() == frames * cols,
                "time_encoding: ", name, " must be contiguous float32 with ", cols, " values per frame on t's device");
  };
  check(scale_logits, num_f, "scale_logits");
  check(phase_logits, num_f, "phase_logits");
  check(aligners_left, 2 * num_f, "aligners_left");
  check(aligners_right, 2 * num_f, "aligners_right");
  for (const at::Tensor* x : {&freqs, &phase_scales})
    TORCH_CHECK(x->device() == t.device() && x->scalar_type() == at::kFloat && x->is_contiguous() &&
                    x->numel() == num_f,
                "time_encoding: freqs and phase_scales must be contiguous float32 [F] on t's device");
  TORCH_CHECK(delta_z >= 1 && delta_z < (int64_t(1) << 31), "time_encoding: delta_z must be a positive int");
  at::Tensor v = at::empty({frames, 2 * num_f}, t.options().dtype(at::kFloat));
  sgv::TimeEncodingParams p;
  p.t = t.data_ptr();
  p.t_double = t.scalar_type() == at::kDouble;
  p.scale_logits = scale_logits.data_ptr<float>();
  p.phase_logits = phase_logits.data_ptr<float>();
  p.aligners_left = aligners_left.data_ptr<float>();
  p.aligners_right = aligners_right.data_ptr<float>();
  p.freqs = freqs.data_ptr<float>();
  p.phase_scales = phase_scales.data_ptr<float>();
  p.v = v.data_ptr<float>();
  p.frames = frames;
  p.freqs_n = num_f;
  p.delta_z = static_cast<int>(delta_z);
  p.exact = exact;
  const DeviceScope scope(t.device());
  const cudaError_t err = sgv::time_encoding_launch(p, scope.stream());
  TORCH_CHECK(err == cudaSuccess, "time_encoding kernel failed: ", error_string(err));
  return v;
}

}  // namespace

// Registered as torch.ops.<TORCH_EXTENSION_NAME>.{bias_act, upfirdn2d, modulate_weight, modulation_coefs,
// bias_act_torgb, token_noise, time_encoding}: plain torch headers, no pybind, which keeps this file's
// compile time (and so the CI compile check) short.
TORCH_LIBRARY(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act(Tensor x, Tensor? b, Tensor? xref, Tensor? yref, Tensor? dyref, int mode, int dim, int act, "
        "float alpha, float gain, float clamp, Tensor? scale=None, Tensor? out_scale=None) -> Tensor");
  m.def("upfirdn2d(Tensor x, Tensor f, int up_x, int up_y, int down_x, int down_y, int pad_x0, int pad_x1, "
        "int pad_y0, int pad_y1, bool flip, float gain, Tensor? b=None, Tensor? scale=None, "
        "Tensor? out_scale=None, int act=0, float alpha=0., float act_gain=1., float clamp=-1.) -> Tensor");
  m.def("modulate_weight(Tensor w, Tensor? wsq, Tensor styles, bool norm_styles, ScalarType dtype) -> Tensor");
  m.def("modulation_coefs(Tensor styles, Tensor? wsq_t, bool norm_styles, ScalarType dtype, bool want_styles) -> "
        "(Tensor, Tensor)");
  m.def("time_encoding(Tensor t, Tensor scale_logits, Tensor phase_logits, Tensor aligners_left, "
        "Tensor aligners_right, Tensor freqs, Tensor phase_scales, int delta_z, bool exact) -> Tensor");
  m.def("bias_act_torgb(Tensor x, Tensor? b, Tensor? scale, Tensor? out_scale, int act, float alpha, float gain, "
        "float clamp, Tensor rgb_w, Tensor rgb_s, Tensor? rgb_b, float rgb_clamp, Tensor? skip) -> "
        "(Tensor, Tensor)");
  m.def("token_noise(Tensor seeds, Tensor? sample, Tensor start, int length, int dim) -> Tensor");
}

TORCH_LIBRARY_IMPL(TORCH_EXTENSION_NAME, SGV_DISPATCH_KEY, m) {
  m.impl("bias_act", &bias_act);
  m.impl("upfirdn2d", &upfirdn2d);
  m.impl("modulate_weight", &modulate_weight);
  m.impl("modulation_coefs", &modulation_coefs);
  m.impl("bias_act_torgb", &bias_act_torgb);
  m.impl("token_noise", &token_noise);
  m.impl("time_encoding", &time_encoding);
}
