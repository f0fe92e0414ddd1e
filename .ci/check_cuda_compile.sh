#!/usr/bin/env bash
# Compile the CUDA ops (core/ops/cuda) for an explicit GPU architecture on a machine without a GPU,
# and load the result, so a kernel that does not compile never lands. Exits non-zero on failure.
#
#   .ci/check_cuda_compile.sh                # TORCH_CUDA_ARCH_LIST=9.0 (H100/H200), the default
#   TORCH_CUDA_ARCH_LIST="8.0;9.0" .ci/check_cuda_compile.sh
#   .ci/check_cuda_compile.sh --allow-missing-toolkit   # succeed (with a notice) where nvcc is absent
#
# The build lands in $SGV_EXTENSIONS_DIR (default ~/.cache/stylegan-v-studio/extensions), keyed by a
# hash of the sources, so an unchanged tree recompiles nothing; keep that folder in a CI cache.
set -euo pipefail
cd "$(dirname "$0")/.."

allow_missing=0
[[ "${1:-}" == "--allow-missing-toolkit" ]] && allow_missing=1

if [[ -z "${CUDA_HOME:-}" ]]; then
  # The toolkit that has both the compiler and the runtime library (cpp_extension links libcudart).
  for d in /usr/local/cuda /usr/local/cuda-*; do
    if [[ -x "$d/bin/nvcc" ]] && { [[ -e "$d/lib64/libcudart.so" ]] || [[ -e "$d/lib/libcudart.so" ]]; }; then
      export CUDA_HOME="$d"
      break
    fi
  done
fi
if [[ -z "${CUDA_HOME:-}" || ! -x "${CUDA_HOME}/bin/nvcc" ]]; then
  if [[ $allow_missing == 1 ]]; then
    echo "check_cuda_compile: no CUDA toolkit (nvcc) found; skipped"
    exit 0
  fi
  echo "check_cuda_compile: no CUDA toolkit found (set CUDA_HOME to a folder with bin/nvcc)" >&2
  exit 1
fi
export PATH="$CUDA_HOME/bin:$PATH"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"

echo "check_cuda_compile: nvcc $("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')," \
     "arch $TORCH_CUDA_ARCH_LIST, CUDA_HOME=$CUDA_HOME"
start=$(date +%s)
python -m core.ops.cuda --arch "$TORCH_CUDA_ARCH_LIST"
echo "check_cuda_compile: passed in $(( $(date +%s) - start )) s"
