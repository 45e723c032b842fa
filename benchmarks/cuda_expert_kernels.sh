#!/usr/bin/env bash
# GPU machine, no native core needed (nvcc builds both programs in well under a minute):
#  1. benchmarks/cuda_expert_loop_ab.cu: the whole CUDA expert loop at pi0.5's full expert size on
#     random weights, each opt-in configuration (tile attention, timed products) checked against
#     the default and timed per chunk in one process, at the key counts of 1 / 2 / 3 views (prefix 256
#     per view + 70 prompt tokens) and a batch of two 2-view observations;
#  2. benchmarks/cuda_expert_kernels.cu: each kernel and product alone at the same key counts;
#  3. Nsight Compute's reading of the attention kernels' first launches.
# Writes $OUT/cuda_expert_kernels.log (both programs' output), $OUT/cuda_expert_kernels.json (the
# kernel bench, one entry per run) and $OUT/ncu_attention.txt: three files, so that it fits beside
# gpu_vs_realtime_vla.sh's in one call's eight (KERNEL_BENCH=1 there starts it in the background
# while the native core builds).
#   usage: OUT=/tmp/x bash benchmarks/cuda_expert_kernels.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; mkdir -p "$OUT"
# ARCH (default: this machine's GPU), BIN_DIR (default /tmp) and BUILD_ONLY=1 (build, run nothing) let
# scripts/cuda_compile_check.sh build the same two programs on a machine without a GPU
arch=${ARCH:-sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')}
flags=(-O3 -std=c++17 "-arch=$arch" -Inative/src -Inative/cuda)
ab=${BIN_DIR:-/tmp}/cuda_expert_loop_ab bin=${BIN_DIR:-/tmp}/cuda_expert_kernels log=$OUT/cuda_expert_kernels.log
# the compilers' messages go to the log too: run in the background (KERNEL_BENCH=1), nothing else shows them
nvcc "${flags[@]}" benchmarks/cuda_expert_loop_ab.cu native/cuda/expert_loop.cu native/cuda/tuned_products.cu \
  -lcublasLt -lcublas -o "$ab" > "$log.ab_nvcc" 2>&1 & ab_pid=$!
nvcc "${flags[@]}" benchmarks/cuda_expert_kernels.cu native/cuda/tuned_products.cu -lcublasLt -lcublas -o "$bin" > "$log" 2>&1
bench_rc=$?
wait "$ab_pid"; ab_rc=$?
cat "$log.ab_nvcc" >> "$log"; rm -f "$log.ab_nvcc"
[ "$bench_rc" = 0 ] || { echo "nvcc failed (kernel bench)" | tee -a "$log"; exit 1; }
[ "$ab_rc" = 0 ] || { echo "nvcc failed (loop A/B)" | tee -a "$log"; exit 1; }
[ "${BUILD_ONLY:-0}" = 1 ] && exit 0
{
  for prefix in 582 326 838; do "$ab" --prefix "$prefix"; done
  "$ab" --prefix 582 --batch 2
} 2>&1 | tee -a "$log"
runs=$(mktemp -d)
{
  for keys in 632 376 888; do "$bin" --keys "$keys" --out "$runs/keys${keys}.json"; done
  "$bin" --keys 632 --batch 2 --out "$runs/keys632_batch2.json"
  "$bin" --keys 582 --tokens 582 --out "$runs/prefix582.json"  # the prefix's own attention at 2 views
  # the vision and prefix loops' products raced as the expert's (the prefix's race: VLA_EDGE_CUDA_PREFIX_TUNED=1)
  for loop in vision prefix; do "$bin" --products "$loop" --out "$runs/products_${loop}.json"; done
} 2>&1 | tee -a "$log"
python3 - "$runs" "$OUT/cuda_expert_kernels.json" <<'PY'
import json, pathlib, sys
runs = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))}
pathlib.Path(sys.argv[2]).write_text(json.dumps(runs, indent=1))
PY
if command -v ncu > /dev/null; then
  timeout 90 ncu --kernel-name "regex:tile_kernel|combine" --launch-count 4 --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis "$bin" --keys 632 \
    > "$OUT/ncu_attention.txt" 2>&1 || echo "ncu: exit $?"
fi
