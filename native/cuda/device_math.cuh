// Device math our kernels share, in a header that needs no CUDA header (so that the emulated stream
// product, tests/native/cuda_emulation.h, runs the same code). Included by CUDA sources only.
#pragma once

#include <cmath>

namespace vla_edge {

// GELU, tanh form, as ggml-CUDA's kernel writes it.
__device__ inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * x * (1.0f + 0.044715f * x * x)));
}

}  // namespace vla_edge
