// The CUDA kernels compiled as plain C++ for CPU tests (tests/test_ops_cuda.py), so their index
// arithmetic and maths are checked against the PyTorch reference on machines without a GPU.
//
// Every launch runs one thread per block and the blocks one after another: the kernels stride
// their loops by blockDim, so one thread does a block's whole work, and __syncthreads is a no-op.
// Build: g++ -std=c++17 -O1 -shared -fPIC -Wno-attributes -I$CUDA_HOME/include host_emulation.cpp

#define SGV_HOST_EMULATION 1
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace {
uint3 g_thread_idx, g_block_idx;
dim3 g_block_dim, g_grid_dim;
std::vector<unsigned char> g_smem;

template <typename F> void emulate(dim3 grid, size_t smem, F&& body) {
  g_smem.assign(smem + 16, 0);
  g_grid_dim = grid;
  g_block_dim = dim3(1, 1, 1);
  g_thread_idx = make_uint3(0, 0, 0);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        g_block_idx = make_uint3(x, y, z);
        body();
      }
}
inline void __syncthreads() {}
}  // namespace

#define threadIdx g_thread_idx
#define blockIdx g_block_idx
#define blockDim g_block_dim
#define gridDim g_grid_dim
#define cudaGetLastError() cudaSuccess
#undef __launch_bounds__
#define __launch_bounds__(...)
#define SGV_LAUNCH(kernel, grid, block, smem, stream, ...) emulate(dim3(grid), (smem), [&] { kernel(__VA_ARGS__); })
#define SGV_DYNAMIC_SMEM(name) unsigned char* name = g_smem.data()

#include "bias_act.cu"
#include "upfirdn2d.cu"
#include "modulate_weight.cu"
#include "motion.cu"
#include "torgb.cu"

extern "C" {

int sgv_emu_bias_act(int dtype, const void* x, const void* b, const void* xref, const void* yref, const void* dyref,
                     void* y, int64_t numel, int64_t step_b, int64_t size_b, int act, int mode, double alpha,
                     double gain, double clamp, const void* scale, const void* out_scale, int64_t step_n) {
  sgv::BiasActParams p;
  p.x = x; p.b = b; p.xref = xref; p.yref = yref; p.dyref = dyref; p.y = y;
  p.scale = scale; p.out_scale = out_scale; p.step_n = step_n;
  p.numel = numel; p.step_b = step_b; p.size_b = size_b;
  p.act = act; p.mode = mode; p.alpha = alpha; p.gain = gain; p.clamp = clamp;
  return static_cast<int>(sgv::bias_act_launch(p, dtype, nullptr));
}

int sgv_emu_upfirdn2d(int dtype, const void* x, const float* f, void* y, const int64_t* sx, const int64_t* sy,
                      const int* dims, const int* cfg, double gain, int act, const void* b, const void* scale,
                      const void* out_scale, double alpha, double act_gain, double clamp) {
  // dims: n, c, in_h, in_w, out_h, out_w; cfg: up_x, up_y, down_x, down_y, pad_x0, pad_y0, f_h, f_w, separable, flip
  sgv::Upfirdn2dParams p;
  p.x = x; p.f = f; p.y = y;
  for (int i = 0; i < 4; ++i) { p.sx[i] = sx[i]; p.sy[i] = sy[i]; }
  p.n = dims[0]; p.c = dims[1]; p.in_h = dims[2]; p.in_w = dims[3]; p.out_h = dims[4]; p.out_w = dims[5];
  p.up_x = cfg[0]; p.up_y = cfg[1]; p.down_x = cfg[2]; p.down_y = cfg[3]; p.pad_x0 = cfg[4]; p.pad_y0 = cfg[5];
  p.f_h = cfg[6]; p.f_w = cfg[7]; p.separable = cfg[8] != 0; p.flip = cfg[9] != 0; p.gain = gain;
  p.act = act; p.b = b; p.scale = scale; p.out_scale = out_scale;
  p.alpha = alpha; p.act_gain = act_gain; p.clamp = clamp;
  return static_cast<int>(sgv::upfirdn2d_launch(p, dtype, nullptr));
}

int sgv_emu_modulate_weight(int dtype, const float* w, const float* wsq, const float* s, void* y, int n, int c_out,
                            int c_in, int taps, int i_inner, int norm_styles) {
  sgv::ModulateWeightParams p;
  p.w = w; p.wsq = wsq; p.s = s; p.y = y;
  p.n = n; p.c_out = c_out; p.c_in = c_in; p.taps = taps;
  p.i_inner = i_inner != 0; p.norm_styles = norm_styles != 0;
  return static_cast<int>(sgv::modulate_weight_launch(p, dtype, nullptr));
}

int sgv_emu_modulation_coefs(int dtype, const float* s, const float* wsq_t, void* d, void* s_out, int n, int c_in,
                             int c_out, int norm_styles) {
  sgv::ModulationCoefsParams p;
  p.s = s; p.wsq_t = wsq_t; p.d = d; p.s_out = s_out;
  p.n = n; p.c_in = c_in; p.c_out = c_out; p.norm_styles = norm_styles != 0;
  return static_cast<int>(sgv::modulation_coefs_launch(p, dtype, nullptr));
}

int sgv_emu_bias_act_torgb(int dtype, const void* x, void* y, const int64_t* sx, const int64_t* sy, const int* dims,
                           const void* b, const void* scale, const void* out_scale, int act, double alpha,
                           double gain, double clamp, const float* rgb_w, const float* rgb_s, int rgb_s_shared,
                           const float* rgb_b,
                           double rgb_clamp, const float* skip, float* img) {
  // dims: batch, groups, c, h, w, rgb_c
  sgv::BiasActToRGBParams p;
  p.x = x; p.y = y;
  for (int i = 0; i < 4; ++i) { p.sx[i] = sx[i]; p.sy[i] = sy[i]; }
  p.batch = dims[0]; p.groups = dims[1]; p.c = dims[2]; p.h = dims[3]; p.w = dims[4]; p.rgb_c = dims[5];
  p.b = b; p.scale = scale; p.out_scale = out_scale;
  p.act = act; p.alpha = alpha; p.gain = gain; p.clamp = clamp;
  p.rgb_w = rgb_w; p.rgb_s = rgb_s; p.rgb_s_shared = rgb_s_shared != 0; p.rgb_b = rgb_b; p.rgb_clamp = rgb_clamp;
  p.skip = skip; p.img = img;
  return static_cast<int>(sgv::bias_act_torgb_launch(p, dtype, nullptr));
}

int sgv_emu_token_noise(const int64_t* seeds, const int64_t* sample, const int64_t* start, float* y,
                        int64_t num_seeds, int64_t windows, int64_t length, int64_t dim) {
  sgv::TokenNoiseParams p;
  p.seeds = seeds; p.sample = sample; p.start = start; p.y = y;
  p.num_seeds = num_seeds; p.windows = windows; p.length = length; p.dim = dim;
  return static_cast<int>(sgv::token_noise_launch(p, nullptr));
}

int sgv_emu_time_encoding(const void* t, int t_double, const float* scale_logits, const float* phase_logits,
                          const float* aligners_left, const float* aligners_right, const float* freqs,
                          const float* phase_scales, float* v, int64_t frames, int64_t num_f, int delta_z,
                          int exact) {
  sgv::TimeEncodingParams p;
  p.t = t; p.t_double = t_double != 0; p.scale_logits = scale_logits; p.phase_logits = phase_logits;
  p.aligners_left = aligners_left; p.aligners_right = aligners_right; p.freqs = freqs;
  p.phase_scales = phase_scales; p.v = v; p.frames = frames; p.freqs_n = num_f; p.delta_z = delta_z;
  p.exact = exact != 0;
  return static_cast<int>(sgv::time_encoding_launch(p, nullptr));
}

}  // extern "C"
