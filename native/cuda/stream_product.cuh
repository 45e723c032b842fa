// y (+)= W x for the expert's few tokens (50 per observation) as our own tensor-core kernel that
// streams the weights through every SM at once. Why: at 50 tokens a product is its weights' read
// (34.6 MB per expert layer, ~10.3 us at an H100's datasheet bandwidth), and cuBLASLt's best offers
// took ~22 us for a layer's four products with their weights in L2 and ~28 us in the chunk
// (docs/gpu.md, "Our own expert loop"), some of them split-K with a reduce kernel of their own. Here a
// block owns 64 weight rows (outputs) and, where the rows alone leave SMs idle, one of `splits` slices
// of the input values; it streams its 64-row slice through shared memory in 64-value stages
// (cp.async, six in flight: ~40 KB of weights requested ahead per SM, about what an SM's share of the
// bandwidth times the memory's latency asks for) beside the tokens' matching slice of x, and multiplies them with
// mma.sync (BF16 in, float32 accumulate: the precision of cuBLAS's BF16 product). Split blocks write
// float32 partial sums; the last block of each 64-row tile to finish (a counter per tile, reset by
// that block for the next launch or graph replay) adds them in split order, so the result does not
// depend on which block finished first. The first try of our own product (2026-12-06: CUDA cores,
// atomic adds) took 42.6 us for a layer's four products, twice cuBLASLt's, and was removed.
// TunedProducts races this kernel beside cuBLAS's offers, after checking it against cuBLAS on the
// real weights. Included by tuned_products.cu only (its launchers are static: each translation unit
// launching a static kernel must set its attribute itself), and by tests/native/stream_product_emulated.cpp,
// which runs the kernel on the CPU (VLA_EDGE_CUDA_EMULATION).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "device_math.cuh"     // gelu_tanh, rope_cache_pair
#include "mma_primitives.cuh"  // cp.async, ldmatrix, mma.sync (or their emulation)
#include "stream_product_plan.h"
#ifndef VLA_EDGE_CUDA_EMULATION
#include "expert_kernels.cuh"  // launch_kernel
#endif

namespace vla_edge {
namespace stream_product {

using bf16 = __nv_bfloat16;

constexpr int kStages = 6;
constexpr size_t kTileValues = size_t{kTokens} * kDepth;  // one stage's x tile, and its W tile (kRows = kTokens)
constexpr size_t kSmemBytes = kStages * 2 * kTileValues * sizeof(bf16);  // 96 KB

// Offset of (row, value) in a 64 x 64 tile whose 128-byte rows hold their 16-byte pieces in the order
// piece ^ (row % 8): ldmatrix's eight rows at one piece then fall in distinct banks.
__device__ inline int swizzled(int row, int col) { return row * kDepth + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7); }

// Block (64-row tile, split, 64-token block). W [rows][K] and x [T][K] BF16 (K a multiple of 64, both
// 16-byte aligned); split s takes stages [s per, s per + per). Plain: y [T][ldy] float32, y = acc +
// beta y. Paired (GeGLU, RoPE: stream_product_plan.h): tile i holds 32 rows beside their 32 partners
// (paired_row), the first half of the warps the first, the second half the partners, met through
// shared memory at the end.
// With one split the block writes its result; with more, part [splits][T][rows] and `counters` (one
// per (tile, token block), zero between launches) meet as above. Under programmatic dependent launch
// the first stages' weights are requested before the wait for the kernel before (they do not depend
// on it), so their read overlaps that kernel's end.
enum class Epilogue { plain, geglu, rope };

// The W row of paired tile `tile`'s local row r, or -1 past the matrix.
template <Epilogue E>
__device__ inline int paired_row(int tile, int r, int rows, const Paired& po) {
    constexpr int kHalf = kRows / 2;
    if constexpr (E == Epilogue::geglu) {
        const int F = rows / 2, j = tile * kHalf + r % kHalf;
        return j < F ? j + (r < kHalf ? 0 : F) : -1;
    } else {  // rope: head h's half-columns [c 32, c 32 + 32), then the same columns d / 2 on
        const int half = po.d / 2, per_head = half / kHalf, h = tile / per_head, c = tile % per_head;
        const int n = h * po.d + c * kHalf + r % kHalf + (r < kHalf ? 0 : half);
        return n < rows ? n : -1;
    }
}

template <Epilogue E, int Warps>
__global__ void __launch_bounds__(32 * Warps, 1) stream_product_kernel(const bf16* __restrict__ W, int rows,
                                                                    const bf16* __restrict__ x, int T, int K, int per,
                                                                    float* y, int64_t ldy, float beta, Paired po,
                                                                    float* part, unsigned* counters) {
#if VLA_EDGE_MMA_CODE
    unsigned char* smem = dynamic_shared();
    bf16* tiles = reinterpret_cast<bf16*>(smem);  // stage i: x tile, then W tile
    const int tile = blockIdx.x, split = blockIdx.y, splits = gridDim.y, t0 = blockIdx.z * kTokens;
    const int first = split * per, count = min(K / kDepth, first + per) - first;  // >= 1 (the host's plan)
    constexpr int kThreads = 32 * Warps, kWarpRows = kRows / Warps, kEights = kWarpRows / 8;  // a warp's rows: 16 or 8
    static_assert(Warps == 4 || Warps == 8, "four warps of 16 rows or eight of 8");
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    auto w_row = [&](int r) {  // the W row of local row r (-1: past the matrix)
        if constexpr (E == Epilogue::plain) {
            const int n = tile * kRows + r;
            return n < rows ? n : -1;
        } else {
            return paired_row<E>(tile, r, rows, po);
        }
    };
    auto x_tile = [&](int i) { return tiles + (i % kStages) * 2 * kTileValues; };
    // each thread's 16-byte pieces of a stage, worked out once: where each lands in the tile, and its
    // row's source (the row's first value of the split; rows past the matrix or the tokens read nothing).
    // Per stage only the stage's offset is added: the first form recomputed rows and 64-bit addresses for
    // every piece of every stage, and issued ~550 instructions per warp and stage (Nsight Compute, H100)
    constexpr int kPieces = kRows * (kDepth / 8) / kThreads;  // per thread: 4 (four warps) or 2 (eight)
    int dst[kPieces];
    const bf16 *w_src[kPieces], *x_src[kPieces];
    bool w_ok[kPieces], x_ok[kPieces];
#pragma unroll
    for (int j = 0; j < kPieces; ++j) {
        const int p = threadIdx.x + j * kThreads, r = p / (kDepth / 8), c = (p % (kDepth / 8)) * 8, n = w_row(r), t = t0 + r;
        dst[j] = swizzled(r, c);
        w_ok[j] = n >= 0, x_ok[j] = t < T;
        w_src[j] = W + int64_t{w_ok[j] ? n : 0} * K + int64_t{first} * kDepth + c;
        x_src[j] = x + int64_t{x_ok[j] ? t : 0} * K + int64_t{first} * kDepth + c;
    }
    auto stage_w = [&](int i) {  // the split's stage i of W into buffer i % kStages
        bf16* ws = x_tile(i) + kTileValues;
#pragma unroll
        for (int j = 0; j < kPieces; ++j) cp_async16_or_zero(ws + dst[j], w_src[j] + i * kDepth, w_ok[j]);
    };
    auto stage_x = [&](int i) {
        bf16* xs = x_tile(i);
#pragma unroll
        for (int j = 0; j < kPieces; ++j) cp_async16_or_zero(xs + dst[j], x_src[j] + i * kDepth, x_ok[j]);
    };
    pdl_launch_dependents();
    for (int i = 0; i < kStages - 1 && i < count; ++i) stage_w(i);  // the weights need nothing from before
    pdl_wait();  // x, y and the partial sums do
    for (int i = 0; i < kStages - 1; ++i) {
        if (i < count) stage_x(i);
        cp_async_commit();  // group 0 also holds the early weights; empty groups past the end keep the count simple
    }
    float acc[4][kEights][4] = {};  // [token tile][8-row group of the warp's rows][fragment]
    for (int i = 0; i < count; ++i) {
        cp_async_wait<kStages - 2>();  // stage i has landed
        __syncthreads();               // ... for every thread, and stage i - 1's buffer is free
        if (i + kStages - 1 < count) {
            stage_w(i + kStages - 1);
            stage_x(i + kStages - 1);
        }
        cp_async_commit();
        const bf16* xs = x_tile(i);
        const bf16* ws = xs + kTileValues;
        // every load of a step before its products, and no branch among them, so that the compiler can
        // issue the next step's loads while this step's products run (a branch per token tile, the first
        // form, left each product waiting on its own load: ~1.3 us per stage on an H100, 2026-12-07)
        if constexpr (Warps == 4) {
#pragma unroll
            for (int k = 0; k < kDepth / 16; ++k) {
                unsigned b[4], a[4][4];  // the warp's 16 weight rows x 16 values: two 8-row B operands
                ldmatrix_x4(b, ws + swizzled(warp * 16 + (lane & 7) + (lane >> 4) * 8, k * 16 + ((lane >> 3) & 1) * 8));
#pragma unroll
                for (int m = 0; m < 4; ++m) ldmatrix_x4(a[m], xs + swizzled(m * 16 + (lane & 15), k * 16 + (lane >> 4) * 8));
#pragma unroll
                for (int m = 0; m < 4; ++m) {  // token tiles past T hold zeros: their products add nothing
                    mma_bf16(acc[m][0], a[m], b[0], b[1]);
                    mma_bf16(acc[m][kEights - 1], a[m], b[2], b[3]);
                }
            }
        } else {
#pragma unroll
            for (int k = 0; k < kDepth / 16; k += 2) {
                unsigned b[4], a[2][4][4];  // the warp's 8 weight rows x 32 values: the B operands of two 16-value steps
                ldmatrix_x4(b, ws + swizzled(warp * 8 + (lane & 7), k * 16 + (lane >> 3) * 8));
#pragma unroll
                for (int kk = 0; kk < 2; ++kk)
#pragma unroll
                    for (int m = 0; m < 4; ++m)
                        ldmatrix_x4(a[kk][m], xs + swizzled(m * 16 + (lane & 15), (k + kk) * 16 + (lane >> 4) * 8));
#pragma unroll
                for (int kk = 0; kk < 2; ++kk)
#pragma unroll
                    for (int m = 0; m < 4; ++m) mma_bf16(acc[m][0], a[kk][m], b[2 * kk], b[2 * kk + 1]);
            }
        }
    }
    cp_async_wait<0>();
    // the thread's fragment (its i-th value): token t0 + 16 m + lane / 4 (+ 8 for e >= 2), local row kWarpRows warp + 8 j + 2 (lane % 4) + e % 2
    auto each = [&](auto&& visit) {
#pragma unroll
        for (int m = 0; m < 4; ++m)
#pragma unroll
            for (int j = 0; j < kEights; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int t = t0 + m * 16 + lane / 4 + (e >> 1) * 8, r = warp * kWarpRows + j * 8 + (lane % 4) * 2 + (e & 1);
                    visit(acc[m][j][e], t, r, t < T ? w_row(r) : -1, (m * kEights + j) * 4 + e);
                }
    };
    if (splits > 1) {
        each([&](float v, int t, int, int n, int) {
            if (n >= 0) part[(int64_t{split} * T + t) * rows + n] = v;
        });
        __threadfence();
        __syncthreads();
        __shared__ bool last;
        if (threadIdx.x == 0) {
            unsigned* counter = counters + blockIdx.z * gridDim.x + blockIdx.x;
            last = atomicAdd(counter, 1u) == static_cast<unsigned>(splits - 1);
            if (last) *counter = 0;  // every other split has counted: ready for the next launch
        }
        __syncthreads();
        if (!last) return;
        __threadfence();
        // split order, the block's own split from its registers. The splits are the outer loop so that
        // each pass has all of the thread's loads in flight at once: a sum per value over the splits
        // waited for one load at a time (the first form: more splits took longer, 2026-12-07)
        float sum[4 * kEights * 4] = {};
        for (int s = 0; s < splits; ++s) {
            each([&](float v, int t, int, int n, int i) {
                if (s == split) sum[i] += v;
                else if (n >= 0) sum[i] += __ldcg(part + (int64_t{s} * T + t) * rows + n);
            });
        }
        each([&](float& v, int, int, int, int i) { v = sum[i]; });
    }
    if constexpr (E == Epilogue::plain) {
        // every old value read before any is written (y's rows could alias as far as the compiler knows)
        float old[4 * kEights * 4];
        if (beta != 0.0f) each([&](float, int t, int, int n, int i) { old[i] = n >= 0 ? y[int64_t{t} * ldy + n] : 0.0f; });
        each([&](float v, int t, int, int n, int i) {
            if (n >= 0) y[int64_t{t} * ldy + n] = beta != 0.0f ? v + beta * old[i] : v;
        });
    } else {
        // the second half of the warps holds the partners of the first half's rows: passed through shared memory
        constexpr int kHalf = kRows / 2;
        __syncthreads();  // every warp is done with the stages' buffers
        float* partners = reinterpret_cast<float*>(smem);  // [64 tokens][32 rows]
        if (warp >= Warps / 2) each([&](float v, int t, int r, int, int) { partners[(t - t0) * kHalf + r - kHalf] = v; });
        __syncthreads();
        if (warp < Warps / 2) {
            each([&](float a, int t, int r, int n, int) {
                if (n < 0) return;
                const float b = partners[(t - t0) * kHalf + r];
                if constexpr (E == Epilogue::geglu) {
                    po.g[int64_t{t} * po.ld + n] = __float2bfloat16(gelu_tanh(a) * b);
                } else {  // what rope_cache_kernel writes, through the same routine
                    rope_cache_pair(a, b, t, n / po.d, n % po.d, po.heads, po.d, po.pos[t], po.theta_scale,
                                    po.cache_rows[t], po.q16, po.kc, po.vc);
                }
            });
        }
    }
#endif
}

#ifndef VLA_EDGE_CUDA_EMULATION
// Whether the kernel takes the product: BF16 W whose stride is a multiple of 64 values, at most
// kMaxTokens tokens, 16-byte aligned inputs.
static inline bool stream_product_fits(const CudaMatrix& W, const void* x, int T) {
    return W.type == CudaElem::bf16 && W.stride % kDepth == 0 && W.stride >= kDepth && T >= 1 && T <= kMaxTokens &&
           reinterpret_cast<uintptr_t>(W.data) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

// Sets the forms' shared-memory allowance (96 KB: every device of compute capability 8.0+ gives 99 KB);
// once per translation unit before the first launch.
static inline cudaError_t allow_stream_product() {
    for (auto kernel : {stream_product_kernel<Epilogue::plain, 4>, stream_product_kernel<Epilogue::geglu, 4>,
                        stream_product_kernel<Epilogue::rope, 4>, stream_product_kernel<Epilogue::plain, 8>,
                        stream_product_kernel<Epilogue::geglu, 8>, stream_product_kernel<Epilogue::rope, 8>}) {
        const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmemBytes));
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

// Whether a paired form takes W: GeGLU needs F = rows / 2 a multiple of 32; RoPE rows = (heads + 2) d
// with d a multiple of 64. (Then the plan's 64-row tiles are its pairs of 32-row halves.)
static inline bool paired_fits(const CudaMatrix& W, const Paired& po) {
    if (po.kind == PairedKind::geglu) return po.g && W.rows % kRows == 0;
    return po.q16 && po.kc && po.vc && po.pos && po.cache_rows && po.d > 0 && po.d % kRows == 0 &&
           W.rows == int64_t{po.heads + 2} * po.d;
}

// y (+)= W x (float32 y [T][ldy]), or with `paired` (paired_fits) what it names, from the same plan.
// Through launch_kernel: programmatic where the loop launches so.
static inline void launch_stream_product(const StreamPlan& p, const CudaMatrix& W, const bf16* x, int T, float* y,
                                         int64_t ldy, float beta, const Paired* paired, float* part, unsigned* counters,
                                         cudaStream_t st) {
    const dim3 grid(p.tiles, p.splits, p.token_blocks);
    const int rows = static_cast<int>(W.rows), K = static_cast<int>(W.stride);
    const bf16* w = static_cast<const bf16*>(W.data);
    const Paired po = paired ? *paired : Paired{};
    auto pick = [&](auto warps) {
        constexpr int kW = decltype(warps)::value;
        return !paired                        ? stream_product_kernel<Epilogue::plain, kW>
               : po.kind == PairedKind::geglu ? stream_product_kernel<Epilogue::geglu, kW>
                                              : stream_product_kernel<Epilogue::rope, kW>;
    };
    auto kernel = p.warps == 8 ? pick(std::integral_constant<int, 8>{}) : pick(std::integral_constant<int, 4>{});
    expert_kernels::launch_kernel(kernel, grid, 32 * p.warps, kSmemBytes, st, w, rows, x, T, K, p.per, y, ldy, beta, po, part,
                                  counters);
}

#endif  // VLA_EDGE_CUDA_EMULATION

}  // namespace stream_product
}  // namespace vla_edge
