// The CUDA kernels compiled as plain C++ for CPU tests (tests/test_ops_cuda.py), so their index
// arithmetic, maths and thread cooperation are checked against the PyTorch reference on machines
// without a GPU.
//
// Every block runs with its real thread count: each thread is a fiber (ucontext) that runs until it
// reaches __syncthreads or returns, and a barrier releases only when every thread of the block waits
// at it. So a block-wide reduction or a shared-memory fill strided by blockDim runs as on the GPU, and
// the order in which blocks, and threads between barriers, run can be changed (sgv_emu_set_schedule: in
// index order, reversed, shuffled): a kernel whose output depends on that order has a race (a missing
// barrier, two threads or blocks writing one address), which the tests detect by comparing the orders'
// outputs bit for bit. Launches are checked against the limits of the hardware (block size, grid extents,
// dynamic shared memory without an opt-in), a barrier reached by only some threads of a block is an
// error, and dynamic shared memory starts as NaN bytes (0xff), as a GPU's starts as garbage.
// Built for the tests by core/ops/cuda/build.py (load_host_extension) through host_ops.cpp, behind ops.cpp's
// bindings; alone (the kernels and the C functions below, no torch): g++ -std=c++17 -O1 -shared -fPIC
// -Wno-attributes -I$CUDA_HOME/include host_emulation.cpp

#ifndef SGV_HOST_EMULATION
#define SGV_HOST_EMULATION 1
#endif
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
int g_schedule = 0;                 // blocks and threads: 0 index order, 1 reversed, 2 shuffled
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
  // Blocks run one after another, in the schedule's order too (a GPU runs them in any order at once):
  // blocks that write one address, or read what another block writes, give different bits.
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  std::vector<uint64_t> order;
  if (g_schedule == 2) {
    order.resize(blocks);
    std::iota(order.begin(), order.end(), uint64_t(0));
    std::shuffle(order.begin(), order.end(), g_rng);
  }
  for (uint64_t i = 0; i < blocks; ++i) {
    const uint64_t b = g_schedule == 2 ? order[i] : (g_schedule == 1 ? blocks - 1 - i : i);
    g_block_idx = make_uint3(unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / grid.x / grid.y));
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

// Blocks, and threads between barriers, run 0: in index order, 1: reversed, 2: shuffled (seeded; threads at
// every barrier).
void sgv_emu_set_schedule(int mode, unsigned seed) {
  g_schedule = mode;
  g_rng.seed(seed);
}

// At most `cap` blocks for every grid-stride kernel (0: the kernels' own caps); see sgv::grid_blocks.
void sgv_emu_set_grid_cap(int cap) { sgv::emu_grid_cap = cap; }

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

}  // extern "C"
