#!/usr/bin/env bash
# Run HERE (a machine with PyPI access), in the repository root, before benchmarks/gpu_verify_targets.sh
# on the GPU machine (no internet there; Python 3.12; torch/nvcc/cmake present). Writes ignored folders:
#   .whl/       cp312 wheels the GPU image lacks (pydantic, gguf, mujoco, ... , TensorRT-RTX bindings)
#   .gpu/       ggml source tree (tar.gz, from the native build's cache) and TensorRT-RTX's small libraries
#   .gpu-trt-1/ .gpu-trt-2/ .gpu-trt-3/  libtensorrt_rtx.so.1 (220 MB), xz-compressed and split in three: one
#               device call carries at most 64 MiB, so parts 1-2 (+ .gpu) travel in a first call and stay on
#               the warm machine, part 3 (+ .whl) in the second (docs/gpu.md).
set -euo pipefail
exclude=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$exclude")"
grep -qxF '/.gpu-trt-3/' "$exclude" 2>/dev/null || printf '/.gpu/\n/.gpu-trt-1/\n/.gpu-trt-2/\n/.gpu-trt-3/\n/.whl/\n' >> "$exclude"
PY=${PYTHON:-python3}
mkdir -p .whl .gpu .gpu-trt-1 .gpu-trt-2 .gpu-trt-3
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
# what vla_edge imports that the GPU image does not hold (docs/gpu.md); versions as pinned in setup.py
for spec in pydantic==2.13.4 pydantic-core==2.46.4 annotated-types typing-inspection gguf==0.19.0 platformdirs==4.14.8 \
            mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw pyopengl python-can==4.6.1 websockets==17.4 ur-rtde==1.6.5 \
            tensorrt-rtx-cu12-bindings==1.7.1.116; do
  $PY -m pip download -q --no-deps $plat -d .whl "$spec" || echo "WARNING: no cp312 wheel for $spec" >&2
done
# the C/C++ source trees the native build fetched and checked (native/fetch_source.py): ggml, and
# sentencepiece + rapidyaml for vla_edge._policy_io (the GPU machine cannot reach PyPI)
for name in ggml sentencepiece rapidyaml; do
  tree=$($PY native/fetch_source.py "$name")
  tar -C "$(dirname "$tree")" -czf ".gpu/$name.tar.gz" "$(basename "$tree")"
done
# TensorRT-RTX's libraries: the big one compressed and split, the rest as they are
tmp=$(mktemp -d)
$PY -m pip download -q --no-deps -d "$tmp" tensorrt-rtx-cu12-libs==1.7.1.116
(cd "$tmp" && unzip -q tensorrt_rtx_cu12_libs-*.whl 'tensorrt_rtx_libs/*')
mkdir -p .gpu/site && rm -rf .gpu/site/tensorrt_rtx_libs && cp -r "$tmp/tensorrt_rtx_libs" .gpu/site/
rm .gpu/site/tensorrt_rtx_libs/libtensorrt_rtx.so.1
xz -T2 -6 -c "$tmp/tensorrt_rtx_libs/libtensorrt_rtx.so.1" > "$tmp/lib.xz"
split -n 3 -d -a 1 "$tmp/lib.xz" "$tmp/part"
for i in 1 2 3; do mv "$tmp/part$((i - 1))" ".gpu-trt-$i/part"; done
sha256sum "$tmp/tensorrt_rtx_libs/libtensorrt_rtx.so.1" | cut -d' ' -f1 > .gpu/libtensorrt_rtx.sha256
rm -rf "$tmp"
# GL loaders for the simulator's EGL rendering (the GPU image has the driver's EGL vendor library only)
grep -qxF '/.gl/' "$exclude" || echo '/.gl/' >> "$exclude"
mkdir -p .gl /tmp/amd64/partial
apt_opts="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64"
apt-get $apt_opts update > /dev/null
(cd .gl && apt-get $apt_opts download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .whl .gpu .gl .gpu-trt-1 .gpu-trt-2 .gpu-trt-3
