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
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader || true
# the simulator renders its cameras through EGL: the image has the NVIDIA driver but not the GL loaders
if [ -d .gl ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
cp -r .gpu/site/. /tmp/site/
trt_note="not carried"
if [ -f .gpu-trt-1/part ] && [ -f .gpu-trt-2/part ] && [ -f .gpu-trt-3/part ]; then
  cat .gpu-trt-1/part .gpu-trt-2/part .gpu-trt-3/part | python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.decompress(sys.stdin.buffer.read()))" \
    > /tmp/site/tensorrt_rtx_libs/libtensorrt_rtx.so.1
  if [ "$(sha256sum /tmp/site/tensorrt_rtx_libs/libtensorrt_rtx.so.1 | cut -d' ' -f1)" = "$(cat .gpu/libtensorrt_rtx.sha256)" ]; then
    trt_note="present"
  else
    trt_note="checksum mismatch"; rm -f /tmp/site/tensorrt_rtx_libs/libtensorrt_rtx.so.1
  fi
fi
echo "TensorRT-RTX library: $trt_note"
export PYTHONPATH=/tmp/site:/tmp/dev MUJOCO_GL=egl
mkdir -p /tmp/dev/vla_edge /tmp/ggml
for f in sdk/*; do ln -sfn "$PWD/$f" /tmp/dev/vla_edge/$(basename "$f"); done
for d in targets robots calibration; do ln -sfn "$PWD/$d" /tmp/dev/vla_edge/$d; done
tar -C /tmp/ggml -xzf .gpu/ggml.tar.gz
GGML=$(ls -d /tmp/ggml/*/ | head -1)
cmake -S . -B /tmp/b -DVLA_EDGE_GGML_DIR="$GGML" -DVLA_EDGE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF -DPython3_EXECUTABLE="$(command -v python3)" > /tmp/cfg.log || { tail -30 /tmp/cfg.log; exit 1; }
cmake --build /tmp/b -j "$(nproc)" --target _native > /tmp/build.log 2>&1 || { tail -50 /tmp/build.log; exit 1; }
rm -f /tmp/dev/vla_edge/_native*.so; ln -sfn /tmp/b/native/_native*.so /tmp/dev/vla_edge/
echo "native build done after $(( $(date +%s) - T0 )) s"
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
