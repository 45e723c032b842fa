// Device math our kernels share (warp_sum / warp_max need the warp shuffles, which CUDA provides
// without a header), in a header that needs no CUDA header (so that the emulated stream
// product, tests/native/cuda_emulation.h, runs the same code). Included by CUDA sources only.
#pragma once

#include <cmath>

namespace vla_edge {

// GELU, tanh form, as ggml-CUDA's kernel writes it.
__device__ inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * x * (1.0f + 0.044715f * x * x)));
}

__device__ inline float warp_sum(float v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

}  // namespace vla_edge
