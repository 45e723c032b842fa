#!/usr/bin/env bash
# GPU machine: vla-edge's `cuda` target beside realtime-vla on one full-size pack (issue 13's anchor run).
# Carry the anchor as an ignored folder: here, `mkdir -p .anchor && git --git-dir=<fetched realtime-vla>
# archive HEAD pi0_infer.py pi05_infer.py | tar -x -C .anchor` (it is run, never committed), plus what
# gpu_verify_targets.sh carries (docs/gpu.md). Reuses the warm machine's native build when there is one.
#   usage: bash benchmarks/gpu_vs_realtime_vla.sh [RECIPE] [extra args for gpu_vs_realtime_vla.py, e.g. --variant ...]
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; mkdir -p "$OUT"
recipe=${1:-actquant-3.97}; shift || true
[ -f .anchor/pi05_infer.py ] || { echo ".anchor/pi05_infer.py is missing: carry realtime-vla's files (see above)"; exit 2; }
# KERNEL_BENCH=1: benchmarks/cuda_expert_kernels.sh (loop A/B, kernel bench; needs no native core) in the
# background from the start, while the core builds (waited for before anything is timed here); its three
# files land in $OUT beside these
kernel_bench_pid=""
if [ "${KERNEL_BENCH:-0}" = 1 ]; then bash benchmarks/cuda_expert_kernels.sh > /dev/null 2>&1 & kernel_bench_pid=$!; fi
source benchmarks/gpu_packs.sh || exit 1
# every ggml-CUDA form against the reference on tiny packs first: a fast form that is wrong is no result
# (SKIP_FORMS=1: already checked on this warm machine). FORMS_ENVS="VAR=VALUE ...": each opt-in
# switch a variant below sets is checked too, every form with that one variable in the environment.
# FORMS=a,b: only those forms (gpu_forms_check.py --forms), when device time is short; FORMS=none: none.
forms_check() {  # OUT_FILE [VAR=VALUE]
  env ${2:+"$2"} PYTHONUNBUFFERED=1 timeout 100 python3 benchmarks/gpu_forms_check.py --tiny "$tiny" --obs 2 \
    ${FORMS:+--forms "$FORMS"} --out "$OUT/$1" || echo "forms check${2:+ with $2}: exit $?"
}
if [ "${SKIP_FORMS:-0}" != 1 ]; then
  # our own CUDA loops (expert, prefix, vision) against ggml's graphs and the reference
  timeout 240 python3 -m pytest tests/gpu/test_cuda_expert_loop.py tests/gpu/test_cuda_prefix_loop.py tests/gpu/test_cuda_vision_loop.py \
    tests/gpu/test_cuda_loops_head_dim_256.py tests/gpu/test_cuda_loop_fallback.py -q -p no:cacheprovider \
    > "$OUT/pytest_cuda_loops.log" 2>&1 || echo "pytest tests/gpu (CUDA loops): exit $?"
  tail -n 3 "$OUT/pytest_cuda_loops.log"
  [ "${FORMS:-}" = none ] || forms_check gpu_forms_check.json
  for assignment in ${FORMS_ENVS:-}; do
    echo "forms check with $assignment"
    forms_check "gpu_forms_check_${assignment%%=*}.json" "$assignment"
  done
fi
[ -z "$kernel_bench_pid" ] || wait "$kernel_bench_pid" || echo "kernel bench: exit $?"
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_vs_realtime_vla.py --anchor .anchor --pack "$pack" --tiny-pack "$tiny" \
  --out "$OUT/gpu_vs_realtime_vla.json" "$@"
