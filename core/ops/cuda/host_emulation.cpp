// The CUDA kernels compiled as plain C++ for CPU tests (tests/test_ops_cuda.py), so their index
// arithmetic, maths and thread cooperation are checked against the PyTorch reference on machines
// without a GPU.
//
// Every block runs with its real thread count: each thread is a fiber (ucontext) that runs until it
// reaches __syncthreads or returns, and a barrier releases only when every thread of the block waits
// at it. So a block-wide reduction or a shared-memory fill strided by blockDim runs as on the GPU, and
// the order in which threads run between barriers can be changed (sgv_emu_set_schedule: in thread
// order, reversed, shuffled): a kernel whose output depends on that order has a race (a missing
// barrier, two threads writing one address), which the tests detect by comparing the orders' outputs
// bit for bit. Launches are checked against the limits of the hardware (block size, grid extents,
// dynamic shared memory without an opt-in), a barrier reached by only some threads of a block is an
// error, and dynamic shared memory starts as NaN bytes (0xff), as a GPU's starts as garbage.
// Build: g++ -std=c++17 -O1 -shared -fPIC -Wno-attributes -I$CUDA_HOME/include host_emulation.cpp

#define SGV_HOST_EMULATION 1
#include <cuda_runtime.h>
#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

namespace {
uint3 g_thread_idx, g_block_idx;
dim3 g_block_dim, g_grid_dim;
std::vector<unsigned char> g_smem;
cudaError_t g_error = cudaSuccess;  // what the last launch's cudaGetLastError() returns
int g_schedule = 0;                 // 0: thread order, 1: reversed, 2: shuffled at every barrier
std::mt19937 g_rng(0);

// Per emulated thread: kernels keep small arrays "in registers"; a sanitizer's report needs more.
#ifndef SGV_EMU_STACK_BYTES
#define SGV_EMU_STACK_BYTES (64 * 1024)
#endif
constexpr size_t kStackBytes = SGV_EMU_STACK_BYTES;
constexpr int kMaxThreads = 1024, kMaxSharedBytes = 48 * 1024;  // no kernel opts in to more shared memory
enum FiberState { kReady, kAtBarrier, kDone };
struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  FiberState state = kReady;
};
std::vector<Fiber> g_fibers;
ucontext_t g_scheduler;
unsigned g_current = 0;
void (*g_trampoline)(void*) = nullptr;
void* g_body = nullptr;

void fiber_main() {
  g_trampoline(g_body);
  g_fibers[g_current].state = kDone;  // uc_link returns to the scheduler
}

uint3 thread_index(unsigned t) {
  return make_uint3(t % g_block_dim.x, t / g_block_dim.x % g_block_dim.y, t / (g_block_dim.x * g_block_dim.y));
}

// Runs one block: every thread to its next barrier (in the schedule's order), then releases the barrier.
cudaError_t run_block(unsigned threads) {
  std::vector<unsigned> order(threads);
  std::iota(order.begin(), order.end(), 0u);
  if (g_schedule == 1) std::reverse(order.begin(), order.end());
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = g_fibers[t];
    if (!f.stack) f.stack.reset(new char[kStackBytes]);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &g_scheduler;
    makecontext(&f.ctx, fiber_main, 0);
    f.state = kReady;
  }
  for (;;) {
    if (g_schedule == 2) std::shuffle(order.begin(), order.end(), g_rng);
    for (unsigned t : order) {
      g_current = t;
      g_thread_idx = thread_index(t);
      swapcontext(&g_scheduler, &g_fibers[t].ctx);
    }
    unsigned done = 0;
    for (unsigned t = 0; t < threads; ++t) done += g_fibers[t].state == kDone;
    if (done == threads) return cudaSuccess;
    if (done != 0) return cudaErrorIllegalInstruction;  // a barrier some threads never reach
    for (unsigned t = 0; t < threads; ++t) g_fibers[t].state = kReady;
  }
}

template <typename F> void trampoline(void* body) { (*static_cast<F*>(body))(); }

template <typename F> void emulate(dim3 grid, dim3 block, size_t smem, F&& body) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  g_error = cudaSuccess;
  if (threads == 0 || threads > kMaxThreads || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 || smem > kMaxSharedBytes) {
    g_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (g_fibers.size() < threads) g_fibers.resize(threads);
  g_smem.assign(smem + 16, 0xff);
  g_grid_dim = grid;
  g_block_dim = block;
  g_trampoline = trampoline<std::remove_reference_t<F>>;
  g_body = &body;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        g_block_idx = make_uint3(x, y, z);
        g_error = run_block(static_cast<unsigned>(threads));
        if (g_error != cudaSuccess) return;
      }
}

inline void __syncthreads() {
  g_fibers[g_current].state = kAtBarrier;
  swapcontext(&g_fibers[g_current].ctx, &g_scheduler);
}
}  // namespace

#define threadIdx g_thread_idx
#define blockIdx g_block_idx
#define blockDim g_block_dim
#define gridDim g_grid_dim
#define cudaGetLastError() g_error
#undef __launch_bounds__
#define __launch_bounds__(...)
#define SGV_LAUNCH(kernel, grid, block, smem, stream, ...) \
  emulate(dim3(grid), dim3(block), (smem), [&] { kernel(__VA_ARGS__); })
#define SGV_DYNAMIC_SMEM(name) unsigned char* name = g_smem.data()

#include "bias_act.cu"
#include "upfirdn2d.cu"
#include "modulate_weight.cu"
#include "motion.cu"
#include "torgb.cu"

namespace {
// Kernels with known behaviour for the emulator's own test (sgv_emu_selftest).
void selftest_reduce(float* out) {  // correct: a block-wide sum through shared memory
  SGV_DYNAMIC_SMEM(smem);
  float* red = reinterpret_cast<float*>(smem);
  red[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) red[threadIdx.x] += red[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = red[0];
}
void selftest_race(float* out) {  // reads a neighbour's shared-memory slot without the barrier
  SGV_DYNAMIC_SMEM(smem);
  float* v = reinterpret_cast<float*>(smem);
  v[threadIdx.x] = float(threadIdx.x);
  out[threadIdx.x] = v[(threadIdx.x + 1) % blockDim.x];
}
void selftest_divergent(float* out) {  // a barrier inside a branch that only some threads take
  if (threadIdx.x < 5) __syncthreads();
  out[threadIdx.x] = 1.f;
}
}  // namespace

extern "C" {

// 0: threads run in index order between barriers, 1: reversed, 2: shuffled (seeded) at every barrier.
void sgv_emu_set_schedule(int mode, unsigned seed) {
  g_schedule = mode;
  g_rng.seed(seed);
}

// The emulator checked on kernels of known behaviour; returns the launch's error code. out: >= 256 floats.
int sgv_emu_selftest(int which, float* out) {
  const size_t floats = sizeof(float) * 256;
  switch (which) {
    case 0: SGV_LAUNCH(selftest_reduce, 2, 256, floats, nullptr, out); break;
    case 1: SGV_LAUNCH(selftest_race, 1, 256, floats, nullptr, out); break;
    case 2: SGV_LAUNCH(selftest_divergent, 1, 64, 0, nullptr, out); break;
    case 3: SGV_LAUNCH(selftest_reduce, 1, 2048, floats, nullptr, out); break;       // over 1024 threads
    case 4: SGV_LAUNCH(selftest_reduce, 1, 256, 64 * 1024, nullptr, out); break;     // over 48 KiB
    case 5: SGV_LAUNCH(selftest_reduce, dim3(1, 70000), 256, floats, nullptr, out); break;  // grid.y > 65535
    case 6: SGV_LAUNCH(selftest_reduce, 0, 256, floats, nullptr, out); break;        // an empty grid
    default: return -1;
  }
  return static_cast<int>(cudaGetLastError());
}

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
