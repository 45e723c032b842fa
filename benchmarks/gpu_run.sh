#!/usr/bin/env bash
# Device-machine run: build the native core with ggml-CUDA (sm_90) and run gpu_check.py (args passed on).
# Expects the ggml tree in .ggml/ and wheels for missing packages in .whl/ (see docs/x86.md).
set -euo pipefail
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:/tmp/dev
mkdir -p /tmp/dev/vla_edge
for f in sdk/*; do ln -sfn "$PWD/$f" /tmp/dev/vla_edge/$(basename "$f"); done
ln -sfn "$PWD/targets" /tmp/dev/vla_edge/targets; ln -sfn "$PWD/robots" /tmp/dev/vla_edge/robots
ln -sfn "$PWD/calibration" /tmp/dev/vla_edge/calibration
cmake -S . -B /tmp/b -DVLA_EDGE_GGML_DIR="$PWD/.ggml" -DVLA_EDGE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF -DPython3_EXECUTABLE="$(command -v python3)" > /tmp/cfg.log
time cmake --build /tmp/b -j "$(nproc)" --target _native > /tmp/build.log 2>&1 || { tail -50 /tmp/build.log; exit 1; }
ln -sfn /tmp/b/native/_native*.so /tmp/dev/vla_edge/
python3 -c "from vla_edge import _native; print(_native.system_info())"
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py "${OUT:-/tmp}/gpu_check.json" "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
# Same-run A/B of the CPU's fused GELU against ggml's element-wise chain, on the quantised full pack
# gpu_check.py made (only when it was asked for a recipe).
quantized=$(ls -d /tmp/vla_full-* 2>/dev/null | head -1 || true)
if [ -n "$quantized" ]; then
  PYTHONUNBUFFERED=1 python3 benchmarks/bench_fused_ops.py "$quantized" --runs 3 --json "${OUT:-/tmp}/fused_vs_unfused.json"
fi
