// The attention tile kernel (the loops' default attention, tile64w8, and its tile64 / tile32 /
// tile128w8 forms) and the merge of its key splits, in a header that needs only the tensor-core
// primitives and WMMA, so that tests/native/cuda_emulation.h can run both on the CPU
// (tests/native/attention_tile_emulated.cpp). expert_kernels.cuh says how the loops launch them.
// Included by CUDA sources only.
#pragma once

#include "device_math.cuh"     // warp_sum, warp_max
#include "grid_barrier.cuh"    // GridBarrier, grid_barrier
#include "mma_primitives.cuh"  // cp.async, pdl_prologue, dynamic_shared (or their emulation)

#ifndef VLA_EDGE_CUDA_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace vla_edge {
namespace expert_kernels {

using bf16 = __nv_bfloat16;

// The same merge, one or two warps (RW) per query row, each lane summing D / (32 RW) columns over the
// splits: every lane reads some splits' (max, sum), the warp shares the weights by shuffles, and the
// lane's columns of up to 16 splits are loaded before any is added. Same sums in the same order in
// both forms. One warp per row keeps four splits' loads in flight; it took ~3.9 us alone for the
// expert's 400 rows of ten 64-key splits and ~19 us for the prefix's 4656 (H100 kernel bench,
// 2026-12-07): few warps, each waiting on its loads. Two warps per row double the warps and halve
// each lane's columns: 3.0 us for the expert's rows (its default), 21.5 us for the prefix's, which
// keeps one (merge_warps_for). Since the ninth session the two-warp form requests all of a row's loads
// at once where a launch has at most 16 splits (merge_row_loads_first; not yet run on a GPU).
constexpr int kMergeWarps = 4;

// *p, or with Cg from L2 past this SM's L1 (__ldcg): for what other blocks of the same launch wrote.
template <bool Cg, typename T>
__device__ inline T load_from(const T* p) {
    if constexpr (Cg) {
        return __ldcg(p);
    } else {
        return *p;
    }
}

template <int N, bool Cg = false>
__device__ inline void load_cols(const float* p, float (&v)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int c = 0; c < N; c += 4) {
            const float4 a = load_from<Cg>(reinterpret_cast<const float4*>(p + c));
            v[c] = a.x, v[c + 1] = a.y, v[c + 2] = a.z, v[c + 3] = a.w;
        }
    } else if constexpr (N == 2) {
        const float2 a = load_from<Cg>(reinterpret_cast<const float2*>(p));
        v[0] = a.x, v[1] = a.y;
    } else {
        v[0] = load_from<Cg>(p);
    }
}

// How many of the launch's key splits observation s has (keys_per_split keys each).
__device__ inline int obs_splits(const int* obs_keys, int s, int keys_per_split) {
    return (obs_keys[s] + keys_per_split - 1) / keys_per_split;
}

// Where query row `row` (token-major, head-minor) of observation s goes in the merged BF16 rows: its
// token's row of `horizon x heads` per observation, ld_out apart, at its head's D columns.
template <int D>
__device__ inline bf16* merged_row(bf16* out, int64_t ld_out, int s, int horizon, int heads, int row) {
    return out + (static_cast<int64_t>(s) * horizon + row / heads) * ld_out + (row % heads) * D;
}

// A lane's kPer columns of one query row, in BF16: acc / l.
template <int kPer>
__device__ inline void store_merged(const float (&acc)[kPer], float l, bf16* dst) {
    const float inv = 1.0f / l;
    if constexpr (kPer == 1) {
        dst[0] = __float2bfloat16(acc[0] * inv);
    } else {
#pragma unroll
        for (int c = 0; c < kPer; c += 2) {
            reinterpret_cast<__nv_bfloat162*>(dst)[c / 2] = __floats2bfloat162_rn(acc[c] * inv, acc[c + 1] * inv);
        }
    }
}

// The two-warp merge of a row where the launch has at most kAhead (16) splits (the expert's ten): the
// lane's columns of every split and its split's (max, sum) are requested before the observation's
// split count is read and before any of them is waited on, so the row costs one round trip to L2
// where the loop below makes three in a row ((max, sum) for the max, again for the sum and weights,
// then the columns). Splits past the observation's count are loaded and not used. The same sums in
// the same order as that loop, so the same bits.
// Cg: the partials were written by other blocks of the same launch (TileMerge), so they are read from L2.
template <int D, bool Cg = false>
__device__ inline void merge_row_loads_first(const float* part_o, const float2* part_ml, int64_t first, int rows_ld,
                                             int splits, int n_of_obs, int lane, int col0, float scale, bf16* dst) {
    constexpr int kPer = D / 64, kAhead = 16;
    float v[kAhead][kPer];
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
        if (j < splits) load_cols<kPer, Cg>(part_o + (first + j * int64_t{rows_ld}) * D + col0, v[j]);
    }
    const float2 ml = lane < splits ? load_from<Cg>(part_ml + first + lane * int64_t{rows_ld}) : make_float2(-INFINITY, 0.0f);
    const int n = n_of_obs;
    const float m = warp_max(lane < n ? ml.x : -INFINITY);
    const float l = warp_sum(lane < n ? expf((ml.x - m) * scale) * ml.y : 0.0f);
    const float w_lane = lane < n ? expf((ml.x - m) * scale) : 0.0f;
    float acc[kPer] = {};
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
        const float w = __shfl_sync(0xffffffffu, w_lane, j);
        if (j < n) {
#pragma unroll
            for (int c = 0; c < kPer; ++c) acc[c] += w * v[j][c];
        }
    }
    store_merged(acc, l, dst);
}

// LoadsFirst (the default): merge_row_loads_first where it applies; false keeps the loop (the kernel
// bench's A/B of the two, the emulated test's check that they give the same bits).
template <int D, int RW, bool LoadsFirst = true>
__global__ void __launch_bounds__(32 * kMergeWarps) attention_merge_rows_kernel(
    const float* part_o, const float2* part_ml, const int* obs_keys, int keys_per_split, int horizon, int heads,
    int rows_ld, int splits, float scale, bf16* out, int64_t ld_out) {
    pdl_prologue();
    constexpr int kPer = D / (32 * RW);  // columns per lane: 1 to 8
    constexpr int kAhead = 16;  // two warps per row: splits whose columns a lane holds at once
    const int lane = threadIdx.x % 32, warp = blockIdx.x * kMergeWarps + threadIdx.x / 32, s = blockIdx.y;
    const int row = warp / RW, col0 = (warp % RW) * (D / RW) + lane * kPer;
    if (row >= horizon * heads) return;
    const int64_t first = static_cast<int64_t>(s) * splits * rows_ld + row;
    if constexpr (RW == 2 && LoadsFirst) {
        if (splits <= kAhead) {  // one round trip: every split's columns and (max, sum) requested at once
            merge_row_loads_first<D>(part_o, part_ml, first, rows_ld, splits, obs_splits(obs_keys, s, keys_per_split), lane,
                                     col0, scale, merged_row<D>(out, ld_out, s, horizon, heads, row) + col0);
            return;
        }
    }
    const int n = obs_splits(obs_keys, s, keys_per_split);
    float m = -INFINITY;
    for (int i = lane; i < n; i += 32) m = fmaxf(m, part_ml[first + i * int64_t{rows_ld}].x);
    m = warp_max(m);
    float l = 0.0f;
    for (int i = lane; i < n; i += 32) {
        const float2 ml = part_ml[first + i * int64_t{rows_ld}];
        l += expf((ml.x - m) * scale) * ml.y;
    }
    l = warp_sum(l);
    float acc[kPer] = {};
    for (int i0 = 0; i0 < n; i0 += 32) {
        const float w_lane = i0 + lane < n ? expf((part_ml[first + (i0 + lane) * int64_t{rows_ld}].x - m) * scale) : 0.0f;
        const int count = min(32, n - i0);
        if constexpr (RW == 1) {  // the form measured in the third session: four splits' float2 loads in flight
            auto add = [&](int j) {
                const float w = __shfl_sync(0xffffffffu, w_lane, j);
                const float* src = part_o + (first + (i0 + j) * int64_t{rows_ld}) * D + col0;
#pragma unroll
                for (int c = 0; c < kPer; c += 2) {
                    const float2 v = *reinterpret_cast<const float2*>(src + c);
                    acc[c] += w * v.x;
                    acc[c + 1] += w * v.y;
                }
            };
            int j = 0;
            for (; j + 4 <= count; j += 4) {
                add(j);
                add(j + 1);
                add(j + 2);
                add(j + 3);
            }
            for (; j < count; ++j) add(j);
        } else {
            for (int j0 = 0; j0 < count; j0 += kAhead) {
                float v[kAhead][kPer];
#pragma unroll
                for (int j = 0; j < kAhead; ++j) {
                    if (j0 + j < count) load_cols(part_o + (first + (i0 + j0 + j) * int64_t{rows_ld}) * D + col0, v[j]);
                }
#pragma unroll
                for (int j = 0; j < kAhead; ++j) {
                    const float w = __shfl_sync(0xffffffffu, w_lane, j0 + j);  // every lane takes part: j0 + j < 32
                    if (j0 + j < count) {
#pragma unroll
                        for (int c = 0; c < kPer; ++c) acc[c] += w * v[j][c];
                    }
                }
            }
        }
    }
    store_merged(acc, l, merged_row<D>(out, ld_out, s, horizon, heads, row) + col0);
}

// ---- attention, second form: the block's keys and values staged in shared memory once for 64
// query rows (four warps of 16), where the split kernel above has each warp of a 16-row block
// read its K/V fragments from global memory. All of pi0.5's query heads share one K/V head, so the
// staged tile serves every row the block holds.
constexpr int kTileWarps = 4;  // each warp 16 query rows
constexpr int kTileRows = 16 * kTileWarps;

// Shared memory of attention_tile_kernel<D>: K and V tiles, rows padded by 16 bytes against bank
// conflicts, then one scratch area per 16-row tile that holds its Q rows and later its scores and weights.
template <int D, int Keys>
struct TileLayout {
    static constexpr int ld = D + 8;                 // halves per staged K/V/Q row
    static constexpr int sld = Keys + 4;        // floats per score row
    static constexpr int pld = Keys + 8;        // halves per weight row
    static constexpr size_t q_bytes = size_t{16} * ld * sizeof(__half);
    static constexpr size_t sp_bytes = size_t{16} * sld * sizeof(float) + size_t{16} * pld * sizeof(__half);
    static constexpr size_t warp_bytes = q_bytes > sp_bytes ? q_bytes : sp_bytes;
    static constexpr size_t kv_bytes = size_t{Keys} * ld * sizeof(__half);
    static constexpr size_t bytes = 2 * kv_bytes + kTileWarps * warp_bytes;
};

// The RoPE-in form's inputs (attention_tile_kernel<..., RopeIn = true>): the queries and the chunk's own
// keys and values straight from the q/k/v product's float32 rows, rotated here, instead of from the rope
// kernel's F16 copies (q16 and the cache rows of the chunk's tokens, which this form leaves unwritten).
// Why: the rope kernel is a launch of its own per layer and flow step (~2.9 us of the expert's ~48 in
// the H100 profile of 2026-12-07, 0.5 ms of a 2-view chunk) for ~50 KB of work. Same values: the
// rotation goes through rope_rotate with the angles rope_table_kernel wrote through rope_cos_sin, as
// rope_cache_pair computes them.
struct TileRope {
    const float* qkv = nullptr;  // [token][(heads + 2) x D]: q heads, k, v (token = observation x horizon + own index)
    const float* cs = nullptr;   // [token][D / 2][cos, sin] (rope_table_kernel)
    int heads = 0;               // query heads per token
    int horizon = 0;             // the chunk's tokens per observation: the last `horizon` of its keys
};

// The merge in the same launch (attention_tile_kernel<..., MergeIn = true>, VLA_EDGE_CUDA_MERGE_IN_ATTENTION=1):
// after a grid barrier every block's warps merge a share of the query rows, as the two-warp merge kernel
// with its loads first does, into `out` (rows of horizon tokens x heads, ld_out apart). Why: the merge
// kernel is a launch of its own in every layer and flow step (~4.7 us of the expert's ~48 in the H100
// profile, with its gap) for ~4 MB of reads spread over all SMs. The launch must be cooperative (every
// block resident) and have at most 16 splits; the loops check both and otherwise run the merge kernel.
struct TileMerge {
    bf16* out = nullptr;
    int64_t ld_out = 0;
    int horizon = 0, heads = 0;
    GridBarrier barrier;
};

// Rotates pair columns j .. j + 3 (and their partners D / 2 on) of slot `slot` of token t's q/k/v row
// into F16 dst[j ..] and dst[j + D / 2 ..]; the v slot (heads + 1) is copied as it is.
template <int D>
__device__ inline void rope_in_pairs4(const TileRope& rope, int64_t t, int slot, int j, __half* dst) {
    constexpr int kHalf = D / 2;
    const float* src = rope.qkv + (t * (rope.heads + 2) + slot) * D + j;
    const float4 a = *reinterpret_cast<const float4*>(src), b = *reinterpret_cast<const float4*>(src + kHalf);
    const float x0[4] = {a.x, a.y, a.z, a.w}, x1[4] = {b.x, b.y, b.z, b.w};
    float y0[4], y1[4];
    if (slot == rope.heads + 1) {
#pragma unroll
        for (int i = 0; i < 4; ++i) y0[i] = x0[i], y1[i] = x1[i];
    } else {
        const float4* cs = reinterpret_cast<const float4*>(rope.cs + (t * kHalf + j) * 2);
        const float4 c01 = cs[0], c23 = cs[1];
        const float c[4] = {c01.x, c01.z, c23.x, c23.z}, sn[4] = {c01.y, c01.w, c23.y, c23.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) rope_rotate(x0[i], x1[i], c[i], sn[i], y0[i], y1[i]);
    }
    __half2* lo = reinterpret_cast<__half2*>(dst + j);
    __half2* hi = reinterpret_cast<__half2*>(dst + j + kHalf);
    lo[0] = __floats2half2_rn(y0[0], y0[1]), lo[1] = __floats2half2_rn(y0[2], y0[3]);
    hi[0] = __floats2half2_rn(y1[0], y1[1]), hi[1] = __floats2half2_rn(y1[2], y1[3]);
}

// Block (64 query rows, Keys keys, observation) writes its rows' unnormalised outputs and (max
// score, sum of weights) for its keys, as attention_split_kernel does; attention_combine_kernel
// merges the splits. On an H100 (2026-12-07, benchmarks/cuda_expert_kernels.cu, 400 query rows):
// ~10 us alone where the split kernel took 15-25 us. Query rows past rows_total are zeros and their outputs land in the padding
// rows of part_o (rows_ld = rows_total rounded up to 16). Keys past the runtime's 16-padding of the
// range are zeros here; keys past `keys` weigh zero.
// Pair: warps per 16-row tile. With one, each warp runs its tile's 128 tensor-core products (scores
// and values at head_dim 256) one after another, ~2-3 us of a ~10 us kernel that has only four warps
// per block to hide it. With two (form tile64w8: eight warps), each takes half of the tile's keys
// for the scores and half of its columns for the values; the first of the two runs the softmax.
// Same products and sums per element in both.
// One block's work (the kernel's, below): its rows' partial outputs over its split's keys. RopeIn: q,
// and the keys and values of the chunk's own tokens (the last rope.horizon keys of each observation's
// range), come from rope's float32 q/k/v rows, rotated here (TileRope); q16 is not read, and the cache
// only for the keys before them. The keys past the range's end are zeros.
template <int D, int Keys, int Pair, bool RopeIn>
__device__ inline void tile_attention_block(const __half* q16, const __half* kc, const __half* vc, const int* obs_base,
                                            const int* obs_keys, int rows_total, int rows_ld, int splits, float scale,
                                            float* part_o, float2* part_ml, const TileRope& rope) {
    using namespace nvcuda;
#if VLA_EDGE_MMA_CODE
    using L = TileLayout<D, Keys>;
    unsigned char* smem = dynamic_shared();
    __half* Ks = reinterpret_cast<__half*>(smem);
    __half* Vs = Ks + Keys * L::ld;
    unsigned char* scratch0 = smem + 2 * L::kv_bytes;
    const int s = blockIdx.z, split = blockIdx.y, row0 = blockIdx.x * kTileRows;
    const int keys = obs_keys[s], key0 = split * Keys;
    if (key0 >= keys) return;  // this observation has fewer splits than the batch's longest (whole block)
    const int n = min(Keys, keys - key0), n16 = (n + 15) / 16 * 16;
    const int64_t base = obs_base[s] + key0;
    const int warp = threadIdx.x / 32 / Pair, part = threadIdx.x / 32 % Pair, lane = threadIdx.x % 32;  // warp: its tile
    constexpr int kPieces = D / 8;  // 16-byte pieces per row
    constexpr int kQuads = D / 8;   // RopeIn: groups of four column pairs per row (rope_in_pairs4)

    // the first key of the chunk's own tokens (RopeIn: rotated here from rope.qkv; before it, the cache)
    const int own0 = RopeIn ? keys - rope.horizon : keys;
    auto q_row = [&](int r) { return reinterpret_cast<__half*>(scratch0 + (r / 16) * L::warp_bytes) + (r % 16) * L::ld; };
    if constexpr (RopeIn) {  // Q rotated from the q/k/v rows: four pairs of columns per thread and step
        for (int i = threadIdx.x; i < kTileRows * kQuads; i += blockDim.x) {
            const int r = i / kQuads, j = i % kQuads * 4, row = row0 + r;
            __half* dst = q_row(r);
            if (row < rows_total) {
                rope_in_pairs4<D>(rope, int64_t{s} * rope.horizon + row / rope.heads, row % rope.heads, j, dst);
            } else {
                *reinterpret_cast<uint2*>(dst + j) = make_uint2(0, 0);
                *reinterpret_cast<uint2*>(dst + j + D / 2) = make_uint2(0, 0);
            }
        }
    } else {
        for (int i = threadIdx.x; i < kTileRows * kPieces; i += blockDim.x) {  // Q, then K: first group
            const int r = i / kPieces, c = i % kPieces, row = row0 + r;
            __half* dst = q_row(r) + c * 8;
            if (row < rows_total) {
                cp_async16(dst, q16 + (static_cast<int64_t>(s) * rows_total + row) * D + c * 8);
            } else {
                *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
            }
        }
    }
    // K and V rows: from the cache before own0 (as far as the range's 16-padding without RopeIn, whose
    // padding rows the runtime zero-fills), rotated from rope.qkv from own0 to the range's end, zeros past it
    auto from_cache = [&](int r) { return r < n16 && (!RopeIn || key0 + r < own0); };
    for (int i = threadIdx.x; i < Keys * kPieces; i += blockDim.x) {
        const int r = i / kPieces, c = i % kPieces;
        if (from_cache(r)) {
            cp_async16(Ks + r * L::ld + c * 8, kc + (base + r) * D + c * 8);
        } else if (!RopeIn || key0 + r >= keys) {
            *reinterpret_cast<uint4*>(Ks + r * L::ld + c * 8) = make_uint4(0, 0, 0, 0);
        }
    }
    cp_async_commit();
    for (int i = threadIdx.x; i < Keys * kPieces; i += blockDim.x) {  // V: second group, read after the scores
        const int r = i / kPieces, c = i % kPieces;
        if (from_cache(r)) {
            cp_async16(Vs + r * L::ld + c * 8, vc + (base + r) * D + c * 8);
        } else if (!RopeIn || key0 + r >= keys) {
            *reinterpret_cast<uint4*>(Vs + r * L::ld + c * 8) = make_uint4(0, 0, 0, 0);
        }
    }
    if constexpr (RopeIn) {  // the chunk's own keys (rotated) and values of this split, by plain stores
        const int first = max(own0 - key0, 0), last = min(keys - key0, Keys);
        for (int i = threadIdx.x; i < 2 * (last - first) * kQuads; i += blockDim.x) {
            const int value = i / ((last - first) * kQuads), rest = i % ((last - first) * kQuads);  // 0: k, 1: v
            const int r = first + rest / kQuads, j = rest % kQuads * 4;
            const int64_t t = int64_t{s} * rope.horizon + (key0 + r - own0);
            rope_in_pairs4<D>(rope, t, rope.heads + value, j, (value ? Vs : Ks) + r * L::ld);
        }
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    unsigned char* scratch = scratch0 + warp * L::warp_bytes;
    const __half* Qs = reinterpret_cast<const __half*>(scratch);
    float* S = reinterpret_cast<float*>(scratch);  // over Q once the scores are in registers
    __half* P = reinterpret_cast<__half*>(scratch + size_t{16} * L::sld * sizeof(float));
    const bool active = row0 + 16 * warp < rows_total;
    constexpr int kKeyTiles = Keys / 16 / Pair;  // score tiles of this warp: keys from 16 * kKeyTiles * part
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kKeyTiles];
    if (active) {  // S = Q K^T for the tile's 16 rows and the warp's share of the block's keys
#pragma unroll
        for (int t = 0; t < kKeyTiles; ++t) wmma::fill_fragment(acc[t], 0.0f);
#pragma unroll
        for (int k = 0; k < D / 16; ++k) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
            wmma::load_matrix_sync(a, Qs + k * 16, L::ld);
#pragma unroll
            for (int t = 0; t < kKeyTiles; ++t) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
                wmma::load_matrix_sync(b, Ks + (part * kKeyTiles + t) * 16 * L::ld + k * 16, L::ld);
                wmma::mma_sync(acc[t], a, b, acc[t]);
            }
        }
    }
    if constexpr (Pair > 1) __syncthreads();  // the other warp of the tile is done with Q, which S overwrites
    if (active) {
        __syncwarp();
#pragma unroll
        for (int t = 0; t < kKeyTiles; ++t) {
            wmma::store_matrix_sync(S + (part * kKeyTiles + t) * 16, acc[t], L::sld, wmma::mem_row_major);
        }
    }
    if constexpr (Pair > 1) __syncthreads();  // both halves of the scores are in S
    if (active && part == 0) {  // the softmax over the tile's rows, by its first warp
        __syncwarp();
        constexpr int kHalf = Keys / 2;
        const int r = lane / 2, h = lane % 2;  // two lanes per row, half of the keys each
        const float* sr = S + r * L::sld + h * kHalf;
        float v[kHalf];  // all loads issued before any arithmetic waits on one
#pragma unroll
        for (int j = 0; j < kHalf; ++j) v[j] = h * kHalf + j < n ? sr[j] : -INFINITY;
        float m = -INFINITY;
#pragma unroll
        for (int j = 0; j < kHalf; ++j) m = fmaxf(m, v[j]);
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));  // finite: every split holds a real key
        float l = 0.0f;
        __half2* pr = reinterpret_cast<__half2*>(P + r * L::pld + h * kHalf);
#pragma unroll
        for (int j = 0; j < kHalf; j += 2) {  // exp(-inf) = 0 for the keys past n
            const float p0 = expf((v[j] - m) * scale), p1 = expf((v[j + 1] - m) * scale);
            pr[j / 2] = __floats2half2_rn(p0, p1);
            l += p0 + p1;
        }
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        const int row = row0 + 16 * warp + r;
        if (h == 0 && row < rows_total) {
            part_ml[(static_cast<int64_t>(s) * splits + split) * rows_ld + row] = make_float2(m, l);
        }
        __syncwarp();
    }
    cp_async_wait<0>();
    __syncthreads();
    if (active) {  // O = P V, four 16-column output tiles at a time (the warp's share), straight to global memory
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[Keys / 16];
#pragma unroll
        for (int k = 0; k < Keys / 16; ++k) wmma::load_matrix_sync(a[k], P + k * 16, L::pld);
        float* dst = part_o + ((static_cast<int64_t>(s) * splits + split) * rows_ld + row0 + 16 * warp) * D;
        constexpr int kColTiles = D / 16 / Pair, kGroup = kColTiles < 4 ? kColTiles : 4;
#pragma unroll
        for (int g = part * kColTiles; g < (part + 1) * kColTiles; g += kGroup) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kGroup];
#pragma unroll
            for (int i = 0; i < kGroup; ++i) wmma::fill_fragment(acc[i], 0.0f);
#pragma unroll
            for (int k = 0; k < Keys / 16; ++k) {
#pragma unroll
                for (int i = 0; i < kGroup; ++i) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                    wmma::load_matrix_sync(b, Vs + k * 16 * L::ld + (g + i) * 16, L::ld);
                    wmma::mma_sync(acc[i], a[k], b, acc[i]);
                }
            }
#pragma unroll
            for (int i = 0; i < kGroup; ++i) wmma::store_matrix_sync(dst + (g + i) * 16, acc[i], D, wmma::mem_row_major);
        }
    }
#else
    __trap();  // built for a GPU without cp.async and F16 tensor cores: fail loudly, never return nothing
#endif
}

// The merge's share of this block (MergeIn): the grid's warps take the (observation, query row, half of
// the columns) triples in turn, each merged as merge_row_loads_first does, reading the partials from L2.
template <int D>
__device__ inline void merge_rows_in_grid(const float* part_o, const float2* part_ml, const int* obs_keys, int keys_per_split,
                                          int rows_total, int rows_ld, int splits, float scale, const TileMerge& m) {
    const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
    const int64_t block = (int64_t{blockIdx.z} * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int64_t all = int64_t{gridDim.x} * gridDim.y * gridDim.z * warps, tasks = int64_t{gridDim.z} * rows_total * 2;
    for (int64_t task = block * warps + threadIdx.x / 32; task < tasks; task += all) {
        const int s = static_cast<int>(task / (2 * rows_total)), row = static_cast<int>(task % (2 * rows_total)) / 2;
        const int col0 = static_cast<int>(task % 2) * (D / 2) + lane * (D / 64);
        merge_row_loads_first<D, true>(part_o, part_ml, static_cast<int64_t>(s) * splits * rows_ld + row, rows_ld, splits,
                                       obs_splits(obs_keys, s, keys_per_split), lane, col0, scale,
                                       merged_row<D>(m.out, m.ld_out, s, m.horizon, m.heads, row) + col0);
    }
}

// Block (64 query rows, Keys keys, observation): tile_attention_block, then with MergeIn the grid
// barrier and this block's share of the merge (TileMerge), which otherwise attention_merge_rows_kernel
// runs in a launch of its own.
template <int D, int Keys, int Pair = 1, bool RopeIn = false, bool MergeIn = false>
__global__ void __launch_bounds__(32 * kTileWarps * Pair) attention_tile_kernel(const __half* q16, const __half* kc,
                                                                         const __half* vc, const int* obs_base,
                                                                         const int* obs_keys, int rows_total,
                                                                         int rows_ld, int splits, float scale,
                                                                         float* part_o, float2* part_ml, TileRope rope,
                                                                         TileMerge merge) {
    pdl_prologue();
    tile_attention_block<D, Keys, Pair, RopeIn>(q16, kc, vc, obs_base, obs_keys, rows_total, rows_ld, splits, scale, part_o,
                                                part_ml, rope);
    if constexpr (MergeIn) {
        grid_barrier(merge.barrier);
        merge_rows_in_grid<D>(part_o, part_ml, obs_keys, Keys, rows_total, rows_ld, splits, scale, merge);
    }
}

}  // namespace expert_kernels
}  // namespace vla_edge
