// The CUDA kernels of core/ops/cuda compiled as plain C++ for CPU tests (tests/test_ops_cuda.py), so their index
// arithmetic and maths are checked against the PyTorch reference on machines without a GPU.
//
// Every launch runs one thread per block and the blocks one after another: the kernels stride
// their loops by blockDim, so one thread does a block's whole work, and __syncthreads is a no-op.
// Build: g++ -std=c++17 -O1 -shared -fPIC -Wno-attributes -I$CUDA_HOME/include -Icore/ops/cuda host_emulation.cpp

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

extern "C" {

int sgv_emu_bias_act(int dtype, const void* x, const void* b, const void* yref, void* y, int64_t numel, int64_t step_b, int64_t size_b, int act, int mode, double alpha,
                     double gain, double clamp, const void* scale, const void* out_scale, int64_t step_n) {
  sgv::BiasActParams p;
  p.x = x; p.b = b; p.yref = yref; p.y = y;
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

}  // extern "C"
