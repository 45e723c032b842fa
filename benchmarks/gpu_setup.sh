#!/usr/bin/env bash
# Sourced by the GPU-machine scripts (gpu_verify_targets.sh, gpu_vs_realtime_vla.sh): installs the carried
# wheels and libraries into /tmp/site, exposes this checkout as the vla_edge package under /tmp/dev, and
# builds the native core with ggml-CUDA for sm_90 into /tmp/b - unless a previous call on the still-warm
# machine already did (then it is reused). Sets trt_note (TensorRT-RTX library present or why not).
# GPU_SETUP_BEFORE_BUILD: a command started in the background once Python can import vla_edge and
# before the ~200 s build (pure-Python work such as `pack synth`, which needs no native core); its
# PID is left in setup_bg_pid for the caller to wait on. GGML_CUDA_FA (ON/OFF, default ON): build
# ggml-CUDA's flash-attention kernels (the `flash_attention` runtime option needs them).
T0=${T0:-$(date +%s)}
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
mkdir -p /tmp/dev/vla_edge
for f in sdk/*; do ln -sfn "$PWD/$f" /tmp/dev/vla_edge/$(basename "$f"); done
for d in targets robots calibration; do ln -sfn "$PWD/$d" /tmp/dev/vla_edge/$d; done
setup_bg_pid=""
if [ -n "${GPU_SETUP_BEFORE_BUILD:-}" ]; then
  bash -c "$GPU_SETUP_BEFORE_BUILD" & setup_bg_pid=$!
fi
deps=()
for name in ggml sentencepiece rapidyaml; do
  [ -f ".gpu/$name.tar.gz" ] || { echo ".gpu/$name.tar.gz is missing: rerun benchmarks/gpu_prepare.sh here"; exit 2; }
  mkdir -p "/tmp/src-$name" && tar -C "/tmp/src-$name" -xzf ".gpu/$name.tar.gz"
  deps+=("-DVLA_EDGE_${name^^}_DIR=$(ls -d /tmp/src-$name/*/ | head -1)")
done
if ! ls /tmp/b/native/_native*.so /tmp/b/native/_policy_io*.so /tmp/b/native/_safety*.so > /dev/null 2>&1; then
  cmake -S . -B /tmp/b "${deps[@]}" -DVLA_EDGE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DGGML_CUDA_FA=${GGML_CUDA_FA:-ON} -DGGML_CUDA_NCCL=OFF -DPython3_EXECUTABLE="$(command -v python3)" > /tmp/cfg.log || { tail -30 /tmp/cfg.log; exit 1; }
  cmake --build /tmp/b -j "$(nproc)" --target _native _policy_io _safety > /tmp/build.log 2>&1 || { tail -50 /tmp/build.log; exit 1; }
fi
rm -f /tmp/dev/vla_edge/_native*.so /tmp/dev/vla_edge/_policy_io*.so /tmp/dev/vla_edge/_safety*.so
ln -sfn /tmp/b/native/_native*.so /tmp/b/native/_policy_io*.so /tmp/b/native/_safety*.so /tmp/dev/vla_edge/
echo "native build done after $(( $(date +%s) - T0 )) s"
