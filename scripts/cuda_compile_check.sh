#!/usr/bin/env bash
# Compiles and links every CUDA source of ours with NVIDIA's nvcc on a machine with no GPU and no CUDA
# install: the toolchain comes from the Python registry's NVIDIA wheels (nvcc, cicc, the CUDA runtime
# and cuBLAS headers and libraries, CCCL), the version the GPU machine has (13.0). What it catches
# before device time is spent: nvcc-only front-end errors (clang accepts more), duplicate symbols
# between our translation units, missing libraries. It does not build ggml-CUDA (hours on 2 cores),
# and it runs nothing.
#   usage: bash scripts/cuda_compile_check.sh [ARCH, default sm_90]   (toolchain cached in $CUDA_WHEELS_DIR)
set -euo pipefail
arch=${1:-sm_90}
root=${CUDA_WHEELS_DIR:-/tmp/vla_edge_cuda13}
top=$root/nvidia/cu13
if [ ! -x "$top/bin/nvcc" ] || [ ! -x "$top/nvvm/bin/cicc" ]; then
  mkdir -p "$root/wheels"
  python3 -m pip download -q --no-deps -d "$root/wheels" nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.1.0.3 nvidia-cuda-cccl==13.0.85
  for w in "$root"/wheels/*.whl; do python3 -m zipfile -e "$w" "$root"; done
  chmod +x "$top"/bin/* "$top"/nvvm/bin/*
  # nvcc.profile looks for include/ and lib/ under targets/<arch>; the wheels lay them out flat
  mkdir -p "$top/targets/x86_64-linux"
  ln -sfn ../../include "$top/targets/x86_64-linux/include"
  ln -sfn ../../lib "$top/targets/x86_64-linux/lib"
  for lib in cublas cublasLt cudart; do ln -sf "lib$lib.so.13" "$top/lib/lib$lib.so"; done
fi
export PATH=$top/bin:$PATH
cd "$(dirname "$0")/.."
flags=(-O3 -std=c++17 "-arch=$arch" -Inative/src -Inative/cuda -Inative/include)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "nvcc $(nvcc --version | tail -1), $arch"
# the native core's CUDA sources, linked together as in the core (every symbol defined once)
objs=()
for src in native/cuda/expert_loop.cu native/cuda/prefix_loop.cu native/cuda/vision_loop.cu native/cuda/tuned_products.cu; do
  nvcc "${flags[@]}" -Xcompiler -fPIC -c "$src" -o "$out/$(basename "$src").o"
  objs+=("$out/$(basename "$src").o")
done
nvcc -shared -o "$out/loops.so" "${objs[@]}" -lcublasLt -lcublas
# nvcc gives each translation unit its own host stub of a template kernel (a local symbol), so a
# function that sets a kernel's attribute or launches one must be local too: a merged (weak) inline
# copy acts on one unit's kernel only (the prefix loop's attention failed so on the GPU, 2026-12-07)
if nm -C "${objs[@]}" | grep -E " [WV] .*(prepare_attention|tile_kernel_for|launch_attention|flash_kernel_for|launch_flash|with_flash_head_dim|launch_stream_product|allow_stream_product)"; then
  echo "native/cuda: the functions above must be static (one per translation unit)" >&2; exit 1
fi
echo "native/cuda: compiled and linked"
# the GPU machine's standalone programs, built by the script that builds and runs them there
ARCH=$arch OUT=$out BIN_DIR=$out BUILD_ONLY=1 bash benchmarks/cuda_expert_kernels.sh \
  || { cat "$out/cuda_expert_kernels.log"; exit 1; }
echo "benchmarks: kernel bench and loop A/B compiled and linked"
