// Torch bindings of the kernels: argument checks, output allocation, stream and device handling.
// Called from core/ops/cuda/functions.py only; see there for the autograd wiring.

#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common.h"

namespace {

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
at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& yref,
                    int64_t mode, int64_t dim, int64_t act, double alpha, double gain, double clamp,
                    const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& out_scale) {
  TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous in some memory format)");
  TORCH_CHECK(mode == 0 || mode == 1, "bias_act: mode must be 0 or 1");
  TORCH_CHECK(act == sgv::kLinear || act == sgv::kLrelu, "bias_act: the kernel implements linear and lrelu");
  TORCH_CHECK(x.numel() == 0 || (dim >= 0 && dim < x.dim()), "bias_act: dim out of range");
  const int code = dtype_code(x);
  sgv::BiasActParams p;
  if (b && b->defined()) {
    TORCH_CHECK(b->is_cuda() && b->device() == x.device(), "bias_act: b must be on x's device");
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
    TORCH_CHECK(t.is_cuda() && t.device() == x.device() && t.scalar_type() == x.scalar_type(),
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
  if (yref && yref->defined()) {
    check_like(*yref, x, "yref");
    p.yref = yref->data_ptr();
  }
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
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaError_t err = sgv::bias_act_launch(p, code, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "bias_act kernel failed: ", cudaGetErrorString(err));
  return y;
}

// f: float32 [taps] (separable) or [fh, fw], correlation taps are taken flipped unless flip.
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip,
                     double gain, const std::optional<at::Tensor>& b, const std::optional<at::Tensor>& scale,
                     const std::optional<at::Tensor>& out_scale, int64_t act, double alpha, double act_gain,
                     double clamp) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "upfirdn2d: x must be a CUDA tensor [N, C, H, W]");
  TORCH_CHECK(f.is_cuda() && f.device() == x.device(), "upfirdn2d: f must be on x's device");
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
    TORCH_CHECK(act == sgv::kLinear || act == sgv::kLrelu, "upfirdn2d: the epilogue implements linear and lrelu");
    TORCH_CHECK(t->device() == x.device() && t->scalar_type() == x.scalar_type() && t->is_contiguous(),
                "upfirdn2d: b, scale and out_scale must be contiguous, on x's device, with x's dtype");
    const bool shape_ok = i == 0 ? (t->dim() == 1 && t->size(0) == x.size(1))
                                 : (t->dim() == 2 && t->size(0) == x.size(0) && t->size(1) == x.size(1));
    TORCH_CHECK(shape_ok, "upfirdn2d: b must be [C] and scale / out_scale [N, C]");
    *slots[i] = t->data_ptr();
  }
  TORCH_CHECK(act == 0 || y.is_non_overlapping_and_dense(), "upfirdn2d: the epilogue needs a dense output");
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaError_t err = sgv::upfirdn2d_launch(p, code, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "upfirdn2d kernel failed: ", cudaGetErrorString(err));
  return y;
}

}  // namespace

// Registered as torch.ops.<TORCH_EXTENSION_NAME>.{bias_act, upfirdn2d}: plain torch headers, no pybind,
// which keeps this file's compile time (and so the CI compile check) short.
TORCH_LIBRARY(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act(Tensor x, Tensor? b, Tensor? yref, int mode, int dim, int act, "
        "float alpha, float gain, float clamp, Tensor? scale=None, Tensor? out_scale=None) -> Tensor");
  m.def("upfirdn2d(Tensor x, Tensor f, int up_x, int up_y, int down_x, int down_y, int pad_x0, int pad_x1, "
        "int pad_y0, int pad_y1, bool flip, float gain, Tensor? b=None, Tensor? scale=None, "
        "Tensor? out_scale=None, int act=0, float alpha=0., float act_gain=1., float clamp=-1.) -> Tensor");
}

TORCH_LIBRARY_IMPL(TORCH_EXTENSION_NAME, CUDA, m) {
  m.impl("bias_act", &bias_act);
  m.impl("upfirdn2d", &upfirdn2d);
}
