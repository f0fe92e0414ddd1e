#!/usr/bin/env bash
# The GPU work owed to bench/RESULTS.md, as ONE call of the `device` tool (no carry needed):
#   run: bash bench/device_session.sh check 540        (timeout_s 570)
# It times, in this order and within the budget (seconds, default 540):
#   1. build   `python -m core.ops.cuda`: compile + load the extension (~60-100 s cold, seconds when cached);
#   2. tests   `pytest -m gpu -q` (GPU-vs-reference tests of the ops, G, the augmentation);
#   3. ops     `python bench/ops_gpu.py`, all sections: parity fp32/fp16 with gradients, op timings kernel vs
#              reference, G frames/s at 32x1 and 1x32 per variant (shared / per video, NCHW / NHWC, eager /
#              CUDA graph) as ratios to the reference ops and shares of the matmul bound, one training
#              iteration kernels vs reference (G, D, R1) (~3-5 min);
#   4. trainer `python bench/train_speed.py --ticks 3`, sec/kimg k=3 vs k=1, only if >= 120 s are left.
# Logs come back in $OUT (one per step) with $OUT/timeline.txt (what ran, when, its exit status).
# `bash bench/device_session.sh train MINUTES` retrains the bundled model (carry data/weizmann64.zip and
# data/i3d-fp16.safetensors; see bench/RESULTS.md).
# Last checked on the CPU only: `SMOKE=1 bash bench/device_session.sh check 300` (no build, GPU tests skip,
# --cpu-smoke runs; no figures), 2026-12-07.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
OUT="${OUT:-out}"
mkdir -p "$OUT"
sm=()
[[ -n "${SMOKE:-}" ]] && sm=(--cpu-smoke)
budget=540

# step NAME MIN MAX CMD...: run CMD (log in $OUT/NAME.log) for at most MAX s or what the budget leaves;
# skip it if fewer than MIN s are left.
step() {
  local name=$1 min=$2 max=$3 lim=$(( budget - SECONDS - 5 ))
  shift 3
  (( lim > max )) && lim=$max
  if (( lim < min )); then
    echo "SKIPPED $name: ${lim}s left" | tee -a "$OUT/timeline.txt"
    return 0
  fi
  echo "== $name (at ${SECONDS}s, up to ${lim}s) ==" | tee -a "$OUT/timeline.txt"
  timeout "$lim" "$@" > "$OUT/$name.log" 2>&1
  echo "   $name: rc $? at ${SECONDS}s" | tee -a "$OUT/timeline.txt"
  tail -n 30 "$OUT/$name.log"
}

case "${1:-check}" in
  check)
    budget="${2:-540}"
    { python --version; python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
      [[ -z "${SMOKE:-}" ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } \
      | tee "$OUT/machine.txt"
    [[ -z "${SMOKE:-}" ]] && step build 30 200 python -m core.ops.cuda
    step gpu_tests 30 150 python -m pytest -m gpu -q -p no:cacheprovider tests/test_ops_cuda.py \
      tests/test_core_gpu.py tests/test_training_augment.py
    step ops_gpu 60 360 python bench/ops_gpu.py "${sm[@]}"
    step train_speed "$([[ -n "${SMOKE:-}" ]] && echo 30 || echo 120)" 200 \
      python bench/train_speed.py --ticks 3 "${sm[@]}"
    ;;
  train)
    python bench/train_bundled.py --data data/weizmann64.zip --run runs/bundled --minutes "${2:-6}" \
      --out "$OUT" --i3d data/i3d-fp16.safetensors --fvd-videos 256 "${sm[@]}" 2>&1 | tee "$OUT/train.log"
    ;;
  *)
    echo "usage: $0 check [budget_s] | train [minutes]   (SMOKE=1: on the CPU, no figures)" >&2
    exit 2
    ;;
esac
