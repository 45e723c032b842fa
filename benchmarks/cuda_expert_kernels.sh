#!/usr/bin/env bash
# GPU machine: builds benchmarks/cuda_expert_kernels.cu with nvcc (seconds, no native core needed) and
# runs it at the expert's key counts for 1 / 2 / 3 views (prefix 256 per view + 70 prompt tokens, plus
# the 50-token chunk), one observation and a batch of two; then Nsight Compute reads the attention
# kernels' first launches. Writes $OUT/cuda_expert_kernels.json (one entry per run), its log
# $OUT/cuda_expert_kernels.log and $OUT/ncu_attention.txt. Can run in the background while the native
# core builds.
#   usage: OUT=/tmp/x bash benchmarks/cuda_expert_kernels.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; mkdir -p "$OUT"
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
bin=/tmp/cuda_expert_kernels
nvcc -O3 -std=c++17 -arch="sm_${cc:-90}" -Inative/src -Inative/cuda benchmarks/cuda_expert_kernels.cu native/cuda/tuned_products.cu \
  -lcublasLt -lcublas -o "$bin" || { echo "nvcc failed"; exit 1; }
runs=$(mktemp -d)
{
  for keys in 632 376 888; do "$bin" --keys "$keys" --out "$runs/keys${keys}.json"; done
  "$bin" --keys 632 --batch 2 --out "$runs/keys632_batch2.json"
} 2>&1 | tee "$OUT/cuda_expert_kernels.log"
python3 - "$runs" "$OUT/cuda_expert_kernels.json" <<'PY'
import json, pathlib, sys
runs = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))}
pathlib.Path(sys.argv[2]).write_text(json.dumps(runs, indent=1))
PY
if command -v ncu > /dev/null; then
  timeout 120 ncu --kernel-name "regex:tile_kernel|combine" --launch-count 4 --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis "$bin" --keys 632 \
    > "$OUT/ncu_attention.txt" 2>&1 || echo "ncu: exit $?"
fi
