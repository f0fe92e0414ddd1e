#!/usr/bin/env bash
# The CUDA kernels' host emulation (core/ops/cuda/host_emulation.cpp) under AddressSanitizer and
# UndefinedBehaviorSanitizer: every emulated kernel test again, failing on any read or write outside
# a tensor's allocation (a GPU may not fault on a few bytes past the end; the emulation does not
# either, without this) and on undefined behaviour in the index arithmetic (signed overflow, shifts).
# SGV_SAN_K narrows the tests (pytest -k). Skips, with a message, where g++, libasan or a CUDA
# toolkit's headers are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
libasan=$(g++ -print-file-name=libasan.so 2>/dev/null || true)
if [[ -z "$libasan" || ! -e "$libasan" ]]; then
  echo "emulation_sanitizers: no libasan next to g++; skipped"
  exit 0
fi
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
status=0
SGV_EMU_CXXFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g" \
  LD_PRELOAD="$libasan" ASAN_OPTIONS="detect_leaks=0:log_path=$report/asan" \
  UBSAN_OPTIONS="print_stacktrace=1:log_path=$report/ubsan" \
  python -m pytest -q -p no:cacheprovider tests/test_ops_cuda.py -m "not slow and not gpu" \
  -k "${SGV_SAN_K:-emulated or host_emulation}" || status=$?
# The reports go to files (pytest captures the process's stderr, and a sanitizer aborts the process).
if grep -l "ERROR\|runtime error" "$report"/* >/dev/null 2>&1; then
  cat "$report"/*
  echo "emulation_sanitizers: the sanitizers found errors (above)"
  exit 1
fi
exit "$status"
