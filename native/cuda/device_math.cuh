// Device math our kernels share (warp_sum / warp_max need the warp shuffles, which CUDA provides
// without a header), in a header that needs no CUDA header (so that the emulated stream
// product, tests/native/cuda_emulation.h, runs the same code). Included by CUDA sources only.
#pragma once

#include <cmath>
#include <cstdint>

#ifndef VLA_EDGE_CUDA_EMULATION  // tests/native/cuda_emulation.h defines __half and its conversion
#include <cuda_fp16.h>
#endif

namespace vla_edge {

// GELU, tanh form, as ggml-CUDA's kernel writes it.
__device__ inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * x * (1.0f + 0.044715f * x * x)));
}

// NeoX RoPE's angle for pair j (columns j and j + d / 2) of a head at position `pos`, as ggml-CUDA
// computes it (theta_scale = rope_theta^(-2 / d)): its cosine and sine. Every RoPE of ours goes
// through this and rope_rotate, so that each writes the same values (rope_cache_pair, the cos/sin
// table of the attention's RoPE-in form).
__device__ inline void rope_cos_sin(int pos, float theta_scale, int j, float& c, float& s) {
    const float theta = static_cast<float>(pos) * powf(theta_scale, static_cast<float>(j));
    c = cosf(theta), s = sinf(theta);
}
__device__ inline void rope_rotate(float x0, float x1, float c, float s, float& y0, float& y1) {
    y0 = x0 * c - x1 * s;
    y1 = x0 * s + x1 * c;
}

// One pair (x0, x1) = (column j, column j + d / 2) of token t's head h in the fused q/k/v row, where
// it goes: a query head (h < heads) rotated by NeoX's RoPE into q16 [t][h]; k rotated and v as it is
// into the token's cache row. The rope kernel and the stream product's paired form both write through
// it, so that the two compute the same values.
__device__ inline void rope_cache_pair(float x0, float x1, int t, int h, int j, int heads, int d, int pos, float theta_scale,
                                       int64_t row, __half* q16, __half* kc, __half* vc) {
    const int half = d / 2;
    if (h == heads + 1) {  // v
        vc[row * d + j] = __float2half(x0);
        vc[row * d + j + half] = __float2half(x1);
        return;
    }
    float c, s, y0, y1;
    rope_cos_sin(pos, theta_scale, j, c, s);
    rope_rotate(x0, x1, c, s, y0, y1);
    __half* dst = h < heads ? q16 + (int64_t{t} * heads + h) * d : kc + row * d;
    dst[j] = __float2half(y0);
    dst[j + half] = __float2half(y1);
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
