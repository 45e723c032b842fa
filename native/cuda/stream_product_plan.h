// How the stream product (stream_product.cuh) covers a product: its tiles and input-value splits.
// Host-only, so that tuned_products.h can hold a plan without every loop compiling the kernel.
#pragma once

#ifndef VLA_EDGE_CUDA_EMULATION  // tests/native/cuda_emulation.h defines the types
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include <algorithm>
#include <cstdint>

namespace vla_edge {
namespace stream_product {

constexpr int kRows = 64;     // weight rows (outputs) per block: 16 per warp
constexpr int kTokens = 64;   // tokens per block (more: grid z)
constexpr int kDepth = 64;    // input values per stage
constexpr int kMaxTokens = 128;  // offered up to here: a weight-streaming product, not a compute-bound one

// How the kernel covers a product: `splits` slices of `per` stages each (the last may be shorter).
struct StreamPlan {
    int splits = 1, per = 0;
    int tiles = 0, token_blocks = 0;  // grid x and z
    int warps = 4;  // per block: four of 16 weight rows each, or eight of 8 (half the products per warp)
};
// The plan for asking `splits` slices (bounded by the stages; none left empty).
inline StreamPlan stream_plan(int rows, int K, int T, int splits, int warps = 4) {
    const int stages = std::max(1, K / kDepth);  // K < 64: never launched (stream_product_fits)
    const int asked = std::max(1, std::min(splits, stages));
    StreamPlan p;
    p.per = (stages + asked - 1) / asked;
    p.splits = (stages + p.per - 1) / p.per;
    p.tiles = (rows + kRows - 1) / kRows;
    p.token_blocks = (T + kTokens - 1) / kTokens;
    p.warps = warps == 8 ? 8 : 4;
    return p;
}
// What the product's rows become where a block holds each row beside its partner 32 or more rows
// away, 32 of each per 64-row tile: GeGLU's gate and up rows (the fused [gate F | up F] matrix), or
// RoPE's rotated halves of each q / k head (the fused q/k/v matrix: `heads` query heads, then k and
// v, each d rows; NeoX's rotate-half pairs column j with j + d / 2). Then the product's float32 rows
// are never written: the block writes what the kernel after the product would have.
enum class PairedKind { geglu, rope };
struct Paired {
    PairedKind kind = PairedKind::geglu;
    __nv_bfloat16* g = nullptr;  // geglu: gelu_tanh(gate) * up, BF16 [T][ld]
    int64_t ld = 0;
    // rope (rope_cache_kernel's outputs): q16 [T][heads][d] F16, k and v into each token's cache row
    // rows[t]; token t at position pos[t]; theta_j = pos theta_scale^j
    const int *pos = nullptr, *cache_rows = nullptr;
    float theta_scale = 0.0f;
    int heads = 0, d = 0;
    __half *q16 = nullptr, *kc = nullptr, *vc = nullptr;
};

// Partial sums and counters the plan needs (floats, counters); zero floats for one split.
inline int64_t stream_part_floats(const StreamPlan& p, int rows, int T) {
    return p.splits > 1 ? int64_t{p.splits} * T * rows : 0;
}
inline int stream_counters(const StreamPlan& p) { return p.tiles * p.token_blocks; }

}  // namespace stream_product
}  // namespace vla_edge
