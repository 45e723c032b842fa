#!/usr/bin/env bash
# GPU machine (H200): the GPU targets of issue 12, end to end. Prepare here first with
# benchmarks/gpu_prepare.sh; docs/gpu.md gives the device calls. Writes $OUT/gpu_verify.json and logs.
# Steps: wheels -> ggml-CUDA native build (sm_90) -> benchmarks/gpu_verify_targets.py (cuda vs reference,
# gb10 refusal on 9.0, development fallback) -> vla-edge run --target cuda --robot ur3-sim (shadow) ->
# vla-edge report --strict -> pytest tests/gpu (the W4A4 kernels; tests/gpu_targets run in CI, no GPU needed).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_verify}; mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_verify.log") 2>&1
T0=$(date +%s)
for d in .gpu .whl; do
  [ -d "$d" ] || { echo "$d is missing: run benchmarks/gpu_prepare.sh here, and make both device calls of docs/gpu.md back to back (the machine keeps the first call's folders only while warm)"; exit 2; }
done
source benchmarks/gpu_setup.sh || exit 1
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_verify_targets.py "$OUT/gpu_verify.json" --trt "$trt_note"
rc_py=$?
python3 -m vla_edge.cli.main run --target cuda --robot ur3-sim --duration 15 --run-dir /tmp/run_cuda > "$OUT/run_cuda.log" 2>&1
rc_run=$?
python3 -m vla_edge.cli.main report /tmp/run_cuda --strict --no-plots --out /tmp/run_cuda_report > "$OUT/report.log" 2>&1
rc_report=$?
cp /tmp/run_cuda_report/report.md "$OUT/report_cuda_run.md" 2>/dev/null || true
python3 -m pytest tests/gpu -q -p no:cacheprovider > "$OUT/pytest_gpu.log" 2>&1
rc_tests=$?
echo "{\"verify_py\": $rc_py, \"run_cuda\": $rc_run, \"report_strict\": $rc_report, \"pytest_gpu\": $rc_tests, \"tensorrt_rtx_lib\": \"$trt_note\", \"wall_s\": $(( $(date +%s) - T0 ))}" | tee "$OUT/exit_codes.json"
tail -n 3 "$OUT/run_cuda.log" "$OUT/report.log" "$OUT/pytest_gpu.log"
