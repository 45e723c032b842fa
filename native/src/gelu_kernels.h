// GELU (tanh approximation) over float32 arrays, vectorised. The element-wise ggml chain spent
// most of its time in libm's scalar tanhf (~8 ns per value; a full pi0.5 inference evaluates
// ~260 million), so the CPU graph calls these through one fused custom op per tensor instead.
#pragma once

#include <cstdint>

namespace vla_edge {

// y[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu_tanh_f32(const float* x, float* y, int64_t n);
// y[i] = gelu_tanh(gate[i]) * up[i]   (Gemma's GeGLU)
void geglu_f32(const float* gate, const float* up, float* y, int64_t n);

}  // namespace vla_edge
