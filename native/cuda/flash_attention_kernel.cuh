// The flash attention kernel itself (flash_attention.cuh says why and how it is launched), in a header
// that needs only the tensor-core primitives, so that tests/native/cuda_emulation.h can run it on the
// CPU: it is the GPU-measured kernel (1.68e-3 from float64 on an H100, 2026-12-07) that checks the
// emulation's reading of ldmatrix (also transposed) and mma.sync against the chip. Included by CUDA
// sources only.
#pragma once

#include "mma_primitives.cuh"  // cp.async, ldmatrix, mma.sync, pdl_prologue (or their emulation)

#ifndef VLA_EDGE_CUDA_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>

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
                           float scale, float* part_o, float2* part_ml, __nv_bfloat16* out, int64_t ld_out) {
    pdl_prologue();
#if VLA_EDGE_MMA_CODE
    using L = FlashLayout<D>;
    constexpr int kPair = flash_pair(D), DP = flash_padded(D);
    constexpr int kPieces = D / 8, kPiecesP = DP / 8;  // 16-byte pieces per row: stored, staged (zero past D)
    constexpr int kCols = DP / kPair, kColTiles = kCols / 8;  // the warp's output columns and 8-column tiles
    static_assert(D % 8 == 0 && kCols % 16 == 0, "head_dim: a multiple of 8 whose warp share is a multiple of 16");
    unsigned char* smem = dynamic_shared();
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
            __nv_bfloat16* dst = out + t * ld_out + ((s % out_groups) * heads + row % heads) * D + col0;
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

}  // namespace expert_kernels
}  // namespace vla_edge
