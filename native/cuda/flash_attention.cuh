// Attention for thousands of query rows (the prefix loop's 582 tokens x 8 heads): each block keeps
// its 64 query rows' outputs in registers and walks its share of the keys 32 at a time with an online
// softmax, so a block covers a whole range of keys instead of one 64-key split. Why: the tile form
// (attention_tile_kernel) writes every 64-key split's float32 partial outputs, which its merge reads
// back: at the prefix's size that is 48 MB per layer for ~2.8 GFLOP of products, ~35 + ~19 us per layer
// on an H100 (2026-12-07). Here the keys are split only as far as it takes to give every SM work
// (flash_plan), often not at all, and an unsplit block writes its normalised BF16 output directly:
// 33.2 against 55.0 us there, and 9.0 against ~19 us for the vision tower's batched form, but 15.6
// against 10.5 us at the expert's 400 query rows (kernel bench, H100, 2026-12-07, sixth session).
// Raw mma.sync (not WMMA): the accumulator's layout is known, so the online softmax rescales the
// outputs in registers and the scores become the value product's inputs without a trip through shared
// memory. Same arithmetic as the tile form: F16 Q/K/V and weights, float32 scores, sums and outputs.
// Included by CUDA sources only.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "expert_kernels.cuh"
#include "flash_attention_kernel.cuh"

namespace vla_edge {
namespace expert_kernels {

// How an attention launch splits the keys: `splits` blocks along them, each `keys` of them (the last
// split takes the rest). flash_plan: the flash form's, a multiple of kFlashKeys; one split where the
// row tiles fill the GPU, more where they leave SMs idle, as many as keep every split in one wave.
// VLA_EDGE_CUDA_FLASH_SPLITS=n (A/B) asks for n, bounded by the key tiles.
struct SplitPlan {
    int splits = 1, keys = 0;
};
inline SplitPlan flash_plan(int rows_total, int observations, int keys, int sms, int forced = 0) {
    const int row_blocks = (rows_total + kFlashRows - 1) / kFlashRows * observations;
    const int tiles = (keys + kFlashKeys - 1) / kFlashKeys;
    int splits = forced > 0 ? forced : std::max(1, 2 * sms / std::max(1, row_blocks));  // two blocks per SM
    splits = std::max(1, std::min(splits, tiles));
    const int per = (tiles + splits - 1) / splits;
    return SplitPlan{(tiles + per - 1) / per, per * kFlashKeys};
}

// Calls f(std::integral_constant<int, D>{}) for the head_dim d the kernel is built for (flash_pair
// says with how many warps per tile) and returns true; false, calling nothing, for any other d. The
// one list of built head dims: the kernel pointer, its shared memory and its launch all come from it.
// `static`, like the launchers (tile_kernel_for says why): its instantiations stay in their unit.
template <typename F>
static inline bool with_flash_head_dim(int d, F&& f) {
    switch (d) {
        case 24: f(std::integral_constant<int, 24>{}); return true;
        case 64: f(std::integral_constant<int, 64>{}); return true;
        case 72: f(std::integral_constant<int, 72>{}); return true;
        case 128: f(std::integral_constant<int, 128>{}); return true;
        case 256: f(std::integral_constant<int, 256>{}); return true;
        default: return false;
    }
}
static inline bool flash_head_dim(int d) { return with_flash_head_dim(d, [](auto) {}); }

// The kernel at head_dim d and its dynamic shared memory (a null kernel for a head_dim it is not built for).
static inline TileKernel flash_kernel_for(int d) {
    TileKernel kernel{nullptr, 0};
    with_flash_head_dim(d, [&](auto D) {
        constexpr int kD = decltype(D)::value;
        kernel = TileKernel{reinterpret_cast<const void*>(attention_flash_kernel<kD>), FlashLayout<kD>::bytes};
    });
    return kernel;
}

// Attention over `plan` for B observations of rows_total query rows each (horizon tokens x heads,
// out_groups as the kernel says), then, where the keys were split, attention_merge_rows_kernel with
// `merge_warps` warps per row (head_dim 64 / 128 / 256 and out_groups 1 only: the vision tower runs one
// split); out rows ld_out apart. part_o / part_ml need rows_ld x plan.splits rows per observation when split.
static inline void launch_flash_attention(int d, const SplitPlan& plan, int merge_warps, int B, int rows_total, int rows_ld,
                                          cudaStream_t st, const __half* q, const __half* k, const __half* v, const int* base,
                                          const int* keys, int horizon, int heads, float scale, float* part_o,
                                          float2* part_ml, bf16* out, int64_t ld_out, int out_groups = 1) {
    const dim3 grid(blocks(rows_total, kFlashRows), plan.splits, B);
    const bool built = with_flash_head_dim(d, [&](auto D) {
        constexpr int kD = decltype(D)::value;
        launch_kernel(attention_flash_kernel<kD>, grid, 128 * flash_pair(kD), FlashLayout<kD>::bytes, st, q, k, v, base, keys,
                      rows_total, rows_ld, plan.splits, plan.keys, horizon, heads, out_groups, scale, part_o, part_ml, out,
                      ld_out);
    });
    if (!built) throw std::invalid_argument("flash attention: not built for head_dim " + std::to_string(d));
    if (plan.splits > 1) {
        launch_attention_merge(merge_warps < 1 ? 1 : merge_warps, st, B, horizon, heads, d, part_o, part_ml, keys, plan.keys,
                               rows_ld, plan.splits, scale, out, ld_out);
    }
}

// What the flash form's key splits depend on besides the launch: the device's SMs, and the splits
// VLA_EDGE_CUDA_FLASH_SPLITS asks for (A/B runs; 0: flash_plan's).
struct FlashSizing {
    int sms = 0, forced = 0;
};

// The key splits a form takes for B observations of rows_total query rows, the longest with `keys`
// keys (the tile and split forms: fixed keys per split; flash: its plan for `sizing`).
inline SplitPlan split_plan(AttentionForm form, int rows_total, int B, int keys, const FlashSizing& sizing) {
    if (form == AttentionForm::flash) return flash_plan(rows_total, B, keys, sizing.sms, sizing.forced);
    return SplitPlan{attention_splits(form, keys), keys_per_split(form)};
}

// Attention in any form, with its merge where it needs one (the loops' one call per layer).
static inline void launch_attention_form(AttentionForm form, int d, const SplitPlan& plan, int merge_warps, int B,
                                         int rows_total, int rows_ld, cudaStream_t st, const __half* q, const __half* k,
                                         const __half* v, const int* base, const int* keys, int horizon, int heads,
                                         float scale, float* part_o, float2* part_ml, bf16* out, int64_t ld_out,
                                         const TileRope& rope = TileRope{}, const GridBarrier* merge_in = nullptr) {
    if (form == AttentionForm::flash) {
        if (rope.qkv || merge_in) throw std::invalid_argument("the flash form has no RoPE-in or merge-in variant");
        launch_flash_attention(d, plan, merge_warps, B, rows_total, rows_ld, st, q, k, v, base, keys, horizon, heads, scale,
                               part_o, part_ml, out, ld_out);
        return;
    }
    if (merge_in) {  // the tile kernel merges into out itself (TileMerge): no merge kernel
        launch_attention(d, form, B, rows_total, rows_ld, plan.splits, st, q, k, v, base, keys, horizon, heads, scale, part_o,
                         part_ml, rope, TileMerge{out, ld_out, horizon, heads, *merge_in});
        return;
    }
    launch_attention(d, form, B, rows_total, rows_ld, plan.splits, st, q, k, v, base, keys, horizon, heads, scale, part_o,
                     part_ml, rope);
    launch_attention_merge(merge_warps, st, B, horizon, heads, d, part_o, part_ml, keys, plan.keys, rows_ld, plan.splits,
                           scale, out, ld_out);
}

}  // namespace expert_kernels
}  // namespace vla_edge
