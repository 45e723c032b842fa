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

namespace vla_edge {
namespace expert_kernels {

constexpr int kFlashKeys = 32;  // keys per staged tile
constexpr int kFlashRows = 64;  // query rows per block: four 16-row tiles

// Head dims the kernel is built for, each with its warps per 16-row tile (Pair): two at 64 / 128 / 256
// (each warp half of the output columns: at 256 one warp's would take 128 accumulator registers), one
// at the vision towers' 72 (SigLIP) and 24 (the tiny test pack), whose rows are zero-padded to a
// multiple of 16 in shared memory for the tensor-core products.
__host__ __device__ constexpr int flash_pair(int D) { return D >= 64 && D % 64 == 0 ? 2 : 1; }
__host__ __device__ constexpr int flash_padded(int D) { return (D + 15) / 16 * 16; }

// Shared memory: the block's Q rows, then two stages of (K, V) tiles; rows padded by 16 bytes so that
// ldmatrix's eight row addresses fall in distinct banks. 99 KB at head_dim 256: every device of
// compute capability 8.0+ allows it.
template <int D>
struct FlashLayout {
    static constexpr int ld = flash_padded(D) + 8;  // halves per row
    static constexpr size_t q_bytes = size_t{kFlashRows} * ld * sizeof(__half);
    static constexpr size_t tile_bytes = size_t{kFlashKeys} * ld * sizeof(__half);
    static constexpr size_t bytes = q_bytes + 4 * tile_bytes;  // Q, then (K, V) per stage
};

__device__ inline unsigned pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
}

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

// Block (64 query rows, split, observation). With one split it writes out[t][head * D + c] in BF16,
// normalised (t = (observation / out_groups) x horizon + row / heads, head = (observation % out_groups)
// x heads + row % heads: the prefix's query heads are rows of one observation sharing its one K/V head,
// out_groups 1; the vision tower's heads are observations of their own, each with its K/V, heads 1 and
// out_groups its heads per image); with more it writes the
// unnormalised outputs and (max score, sum of weights) per row, as attention_tile_kernel does, for
// attention_merge_rows_kernel (keys_per_split = plan.keys). With two warps per tile, warp w holds rows
// 16 (w / 2) .. + 15 and output columns (w % 2) D / 2 .. + D / 2 - 1, and both compute the tile's scores
// (twice the score products, half the registers of one warp holding all D columns). Keys past the
// observation's count weigh zero; keys past its 16-padding are read as zeros.
template <int D>
__global__ void __launch_bounds__(128 * flash_pair(D), 2)
    attention_flash_kernel(const __half* q16, const __half* kc, const __half* vc, const int* obs_base, const int* obs_keys,
                           int rows_total, int rows_ld, int splits, int split_keys, int horizon, int heads, int out_groups,
                           float scale, float* part_o, float2* part_ml, bf16* out, int64_t ld_out) {
    pdl_prologue();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using L = FlashLayout<D>;
    constexpr int kPair = flash_pair(D), DP = flash_padded(D);
    constexpr int kPieces = D / 8, kPiecesP = DP / 8;  // 16-byte pieces per row: stored, staged (zero past D)
    constexpr int kCols = DP / kPair, kColTiles = kCols / 8;  // the warp's output columns and 8-column tiles
    static_assert(D % 8 == 0 && kCols % 16 == 0, "head_dim: a multiple of 8 whose warp share is a multiple of 16");
    extern __shared__ __align__(128) unsigned char smem[];
    __half* Qs = reinterpret_cast<__half*>(smem);
    auto Ks = [&](int stage) { return reinterpret_cast<__half*>(smem + L::q_bytes + (2 * stage) * L::tile_bytes); };
    auto Vs = [&](int stage) { return reinterpret_cast<__half*>(smem + L::q_bytes + (2 * stage + 1) * L::tile_bytes); };
    const int s = blockIdx.z, split = blockIdx.y, row0 = blockIdx.x * kFlashRows;
    const int keys = obs_keys[s], key0 = split * split_keys;
    if (key0 >= keys) return;  // this observation has fewer splits than the batch's longest (whole block)
    const int n = min(split_keys, keys - key0), n16 = (n + 15) / 16 * 16, tiles = (n + kFlashKeys - 1) / kFlashKeys;
    const int64_t base = obs_base[s] + key0;
    const int warp = threadIdx.x / 32, tile16 = warp / kPair, half = warp % kPair, lane = threadIdx.x % 32;

    for (int i = threadIdx.x; i < kFlashRows * kPiecesP; i += blockDim.x) {
        const int r = i / kPiecesP, c = i % kPiecesP, row = row0 + r;
        __half* dst = Qs + r * L::ld + c * 8;
        if (row < rows_total && c < kPieces) {
            cp_async16(dst, q16 + (static_cast<int64_t>(s) * rows_total + row) * D + c * 8);
        } else {
            *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
        }
    }
    auto stage_tile = [&](int t, int stage) {  // keys [t * 32, t * 32 + 32) of the split
        __half *ks = Ks(stage), *vs = Vs(stage);
        for (int i = threadIdx.x; i < kFlashKeys * kPiecesP; i += blockDim.x) {
            const int r = i / kPiecesP, c = i % kPiecesP, key = t * kFlashKeys + r;
            if (key < n16 && c < kPieces) {
                cp_async16(ks + r * L::ld + c * 8, kc + (base + key) * D + c * 8);
                cp_async16(vs + r * L::ld + c * 8, vc + (base + key) * D + c * 8);
            } else {
                *reinterpret_cast<uint4*>(ks + r * L::ld + c * 8) = make_uint4(0, 0, 0, 0);
                *reinterpret_cast<uint4*>(vs + r * L::ld + c * 8) = make_uint4(0, 0, 0, 0);
            }
        }
        cp_async_commit();
    };
    stage_tile(0, 0);  // with Q: the first group

    float o[kColTiles][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows lane / 4 and lane / 4 + 8 of the tile
    const float log2_scale = scale * 1.4426950408889634f;
    const __half* qrow = Qs + (16 * tile16 + lane % 16) * L::ld + (lane / 16) * 8;  // ldmatrix addresses: A
    for (int t = 0; t < tiles; ++t) {
        if (t + 1 < tiles) {
            stage_tile(t + 1, (t + 1) % 2);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const __half *ks = Ks(t % 2), *vs = Vs(t % 2);
        float sc[kFlashKeys / 8][4] = {};  // scores: 16 rows x 32 keys
#pragma unroll
        for (int k = 0; k < DP / 16; ++k) {
            unsigned a[4];
            ldmatrix_x4(a, qrow + k * 16);
#pragma unroll
            for (int j = 0; j < kFlashKeys / 16; ++j) {  // two 8-key tiles per ldmatrix
                unsigned b[4];
                ldmatrix_x4(b, ks + (j * 16 + lane % 8 + (lane / 16) * 8) * L::ld + k * 16 + ((lane / 8) % 2) * 8);
                mma_f16(sc[2 * j], a, b[0], b[1]);
                mma_f16(sc[2 * j + 1], a, b[2], b[3]);
            }
        }
        float alpha[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {  // h: the thread's row lane / 4 (0) or lane / 4 + 8 (1)
            float mx = m[h];
#pragma unroll
            for (int j = 0; j < kFlashKeys / 8; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int key = t * kFlashKeys + j * 8 + (lane % 4) * 2 + e;
                    if (key >= n) sc[j][2 * h + e] = -INFINITY;
                    mx = fmaxf(mx, sc[j][2 * h + e]);
                }
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));  // finite: every tile holds a real key
            alpha[h] = exp2f((m[h] - mx) * log2_scale);         // 0 on the first tile (m = -inf)
            m[h] = mx;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < kFlashKeys / 8; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float p = exp2f((sc[j][2 * h + e] - mx) * log2_scale);  // 0 for masked keys
                    sc[j][2 * h + e] = p;
                    sum += p;
                }
            }
            l[h] = l[h] * alpha[h] + sum;
        }
#pragma unroll
        for (int c = 0; c < kColTiles; ++c) {
            o[c][0] *= alpha[0], o[c][1] *= alpha[0], o[c][2] *= alpha[1], o[c][3] *= alpha[1];
        }
#pragma unroll
        for (int kk = 0; kk < kFlashKeys / 16; ++kk) {  // O += P V over 16 keys at a time
            const unsigned a[4] = {pack_half2(sc[2 * kk][0], sc[2 * kk][1]), pack_half2(sc[2 * kk][2], sc[2 * kk][3]),
                                   pack_half2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                   pack_half2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
            for (int c = 0; c < kColTiles; c += 2) {  // two 8-column tiles per ldmatrix
                unsigned b[4];
                ldmatrix_x4<true>(b, vs + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * L::ld + half * kCols + c * 8 +
                                         (lane / 16) * 8);
                mma_f16(o[c], a, b[0], b[1]);
                mma_f16(o[c + 1], a, b[2], b[3]);
            }
        }
        __syncthreads();  // every warp is done with this stage before the next iteration refills it
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int row = row0 + 16 * tile16 + lane / 4 + 8 * h;
        if (row >= rows_total) continue;
        const int col0 = half * kCols + (lane % 4) * 2;
        constexpr int kStored = (D - (kPair - 1) * kCols) / 8;  // tiles short of the zero padding past D (every
                                                                // tile where kPair is 2: D = DP there)
        if (splits == 1) {
            const int64_t t = static_cast<int64_t>(s / out_groups) * horizon + row / heads;
            bf16* dst = out + t * ld_out + ((s % out_groups) * heads + row % heads) * D + col0;
            const float inv = 1.0f / l[h];
#pragma unroll
            for (int c = 0; c < kColTiles; ++c) {
                if (c < kStored) {
                    *reinterpret_cast<__nv_bfloat162*>(dst + c * 8) = __floats2bfloat162_rn(o[c][2 * h] * inv, o[c][2 * h + 1] * inv);
                }
            }
        } else {
            const int64_t at = (static_cast<int64_t>(s) * splits + split) * rows_ld + row;
            float* dst = part_o + at * D + col0;
#pragma unroll
            for (int c = 0; c < kColTiles; ++c) {
                if (c < kStored) *reinterpret_cast<float2*>(dst + c * 8) = make_float2(o[c][2 * h], o[c][2 * h + 1]);
            }
            if (half == 0 && lane % 4 == 0) part_ml[at] = make_float2(m[h], l[h]);
        }
    }
#else
    __trap();  // built for a GPU without cp.async and F16 tensor cores: fail loudly, never return nothing
#endif
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
                                         float scale, float* part_o, float2* part_ml, bf16* out, int64_t ld_out) {
    if (form == AttentionForm::flash) {
        launch_flash_attention(d, plan, merge_warps, B, rows_total, rows_ld, st, q, k, v, base, keys, horizon, heads, scale,
                               part_o, part_ml, out, ld_out);
        return;
    }
    launch_attention(d, form, B, rows_total, rows_ld, plan.splits, st, q, k, v, base, keys, horizon, heads, scale, part_o,
                     part_ml);
    launch_attention_merge(merge_warps, st, B, horizon, heads, d, part_o, part_ml, keys, plan.keys, rows_ld, plan.splits,
                           scale, out, ld_out);
}

}  // namespace expert_kernels
}  // namespace vla_edge
