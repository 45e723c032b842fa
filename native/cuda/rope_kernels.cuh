// The expert and prefix loops' RoPE kernels, in a header that needs only the device math and the
// programmatic-launch prologue, so that tests/native/cuda_emulation.h runs them on the CPU beside the
// attention kernels that read what they write (tests/native/attention_tile_emulated.cpp). Included by
// CUDA sources only (expert_kernels.cuh launches them).
#pragma once

#include "device_math.cuh"     // rope_cache_pair, rope_cos_sin
#include "mma_primitives.cuh"  // pdl_prologue (or its emulation)

#ifndef VLA_EDGE_CUDA_EMULATION
#include <cuda_fp16.h>
#endif

#include <cstdint>

namespace vla_edge {
namespace expert_kernels {

// NeoX RoPE on q and k, as ggml-CUDA computes the angle; q goes to F16 for attention, k and v
// straight into the token's cache row (what ggml does in three kernels). One block per (token, head
// slot): slots 0..heads-1 the q heads, then k, then v's copy. One block per token took 4.3 us for
// the expert's 50 tokens, each thread working through several heads' angles in turn with 50 SMs
// busy; this form 2.1 us (kernel bench, H100, 2026-12-07). The arithmetic per element is the same.
static __global__ void rope_cache_kernel(const float* qkv, int heads, int d, const int* pos, const int* rows, float theta_scale,
                                         __half* q16, __half* kc, __half* vc) {
    pdl_prologue();
    const int t = blockIdx.x, h = blockIdx.y, half_d = d / 2;
    const float* src = qkv + (static_cast<int64_t>(t) * (heads + 2) + h) * d;
    for (int j = threadIdx.x; j < half_d; j += blockDim.x) {
        rope_cache_pair(src[j], src[j + half_d], t, h, j, heads, d, pos[t], theta_scale, rows[t], q16, kc, vc);
    }
}

// cs[t][j] = (cos, sin) of token t's RoPE angle for pair j < d / 2: the table the attention tile
// kernel's RoPE-in form (TileRope) rotates q and the chunk's own k with. One block per token. The
// chunk's positions are the same in every flow step and layer, so the expert loop runs this once per
// chunk where it would otherwise run the rope kernel once per layer and step.
static __global__ void rope_table_kernel(const int* pos, int half_d, float theta_scale, float* cs) {
    pdl_prologue();
    const int t = blockIdx.x;
    for (int j = threadIdx.x; j < half_d; j += blockDim.x) {
        float c, s;
        rope_cos_sin(pos[t], theta_scale, j, c, s);
        cs[(static_cast<int64_t>(t) * half_d + j) * 2] = c;
        cs[(static_cast<int64_t>(t) * half_d + j) * 2 + 1] = s;
    }
}

}  // namespace expert_kernels
}  // namespace vla_edge
