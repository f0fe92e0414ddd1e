#!/usr/bin/env bash
# The CUDA kernels' host emulation (core/ops/cuda/host_emulation.cpp) under AddressSanitizer and
# UndefinedBehaviorSanitizer: every emulated kernel test again, failing on any read or write outside
# a tensor's allocation (a GPU may not fault on a few bytes past the end; the emulation does not
# either, without this), on a 16-byte pack loaded from a misaligned address (a GPU's "misaligned
# address" error) and on undefined behaviour in the index arithmetic (signed overflow, shifts).
# SGV_SAN_K narrows the tests (pytest -k). Skips, with a message, where g++ has no libasan; the tests
# skip themselves without a CUDA toolkit's headers.
set -euo pipefail
cd "$(dirname "$0")/.."
libasan=$(g++ -print-file-name=libasan.so 2>/dev/null || true)
if [[ -z "$libasan" || ! -e "$libasan" ]]; then
  echo "emulation_sanitizers: no libasan next to g++; skipped"
  exit 0
fi
# --capture=sys: the sanitizers write their reports to file descriptor 2 and abort the process, so
# pytest must not hold that descriptor. Fiber stacks of 256 KiB: a report is printed on the fiber's stack.
SGV_EMU_CXXFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g \
  -DSGV_EMU_STACK_BYTES=262144" \
  LD_PRELOAD="$libasan" ASAN_OPTIONS="detect_leaks=0" UBSAN_OPTIONS="print_stacktrace=1" \
  python -m pytest -q -p no:cacheprovider --capture=sys tests/test_ops_cuda.py -m "not slow and not gpu" \
  -k "${SGV_SAN_K:-emulated or host_emulation}"
