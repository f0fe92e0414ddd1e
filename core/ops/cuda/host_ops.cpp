// ops.cpp's torch bindings over the kernels' host emulation, registered for CPU tensors: the extension
// the CPU tests build (core/ops/cuda/build.py, load_host_extension) so that the kernels, and the bindings'
// checks and parameter marshalling in front of them, run without a GPU. Not part of the CUDA extension.
#define SGV_HOST_EMULATION 1
#include "ops.cpp"
// After the torch headers: the emulation's threadIdx / blockDim / ... macros must not reach them.
#include "host_emulation.cpp"
