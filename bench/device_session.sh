#!/usr/bin/env bash
# Everything a lent GPU owes this project, prepared to run in two calls of the `device` tool
# (15 minutes of device time per session in all; each call at most 10 minutes).
#
# Call 1 (~6 min): GPU tests, CUDA-op parity and timings, generator throughput, trainer sec/kimg.
#   run: bash bench/device_session.sh measure          (timeout_s 590)
# Call 2 (~7 min): train the bundled model and evaluate it, from a prepared data zip and I3D weights.
#   here first: python -m training.prepare /work/shared/data/weizmann-actions data/weizmann64.zip \
#                 --resolution 64 --ext jpg --exclude 0_00000067,1_00000065,3_00000069,4_00000071
#               (and data/i3d-fp16.safetensors: the resolved Kinetics-400 I3D weights saved in fp16)
#   run: bash bench/device_session.sh train 6           (carry: data; timeout_s 590)
#   then commit $OUT/default-model.safetensors as assets/default-model.safetensors and record the figures.
# Logs land in $OUT (they come back with the call); the device image has torch but no gradio/lpips/open_clip.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT="${OUT:-out}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."

case "${1:-measure}" in
  measure)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    timeout 150 python -m pytest -q -m gpu tests/test_core_gpu.py tests/test_ops_cuda.py 2>&1 | tee "$OUT/gpu_tests.log"
    timeout 200 python bench/ops_gpu.py 2>&1 | tee "$OUT/ops_gpu.log"
    timeout 60 python bench/generate.py --presets small,256 --batch 32 --skip stream 2>&1 | tee "$OUT/generate.log"
    timeout 150 python bench/train_speed.py --ticks 3 2>&1 | tee "$OUT/train_speed.log"
    ;;
  train)
    minutes="${2:-6}"
    python bench/train_bundled.py --data data/weizmann64.zip --run runs/bundled --minutes "$minutes" \
      --out "$OUT" --i3d data/i3d-fp16.safetensors --fvd-videos 256 2>&1 | tee "$OUT/train.log"
    ;;
  *)
    echo "usage: $0 measure | train [minutes]" >&2
    exit 2
    ;;
esac
