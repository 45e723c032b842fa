// A candidate layer product for the expert's 50-150 token inputs, where the weights dominate: cuBLAS
// spends ~23 us on a layer's four products at 50 tokens on an H100, twice the 10.3 us the weights
// take to stream once at the datasheet bandwidth (docs/gpu.md, "Kernel bench"). Here each block owns
// 16 weight rows and its eight warps split the inputs' width between them: each warp loads four
// 16 x 16 weight fragments before it multiplies them with every token's fragment (read from L2, where
// the small input stays), so every weight byte is read once and many loads are in flight per SM.
// The warps' partial sums meet in shared memory; with the width split over several blocks as well
// (products of few rows) they meet in the output through atomic adds. Measured against cuBLAS by
// benchmarks/cuda_expert_kernels.cu; not used by the loops until it wins there. Only templates and
// inline functions, so that several translation units may include it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>

namespace vla_edge {
namespace stream_product {

using bf16 = __nv_bfloat16;
constexpr int kWarps = 8, kAhead = 4;  // warps per block; weight fragments each warp loads before multiplying
constexpr int kStep = 16 * kAhead;     // input columns a warp takes at a time

// y[t][r] = (beta y[t][r] or 0) + sum_k W[r][k] x[t][k] for rows [16 blockIdx.x, +16) over the input
// columns [blockIdx.y k_split, +k_split). x must hold 16 NT rows (those past T finite: their sums
// are never written). With gridDim.y > 1 each block adds its part atomically: y must already hold
// its starting value (the caller zeroes it where beta is 0).
template <int NT>
__global__ void __launch_bounds__(32 * kWarps) stream_product_kernel(const bf16* W, int64_t S, int K, const bf16* x, int T,
                                                                     float* y, int R, float beta, int k_split) {
    using namespace nvcuda;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    extern __shared__ float sums[];  // [warp][16 rows][16 NT tokens]
    const int warp = threadIdx.x / 32, r0 = blockIdx.x * 16, width = 16 * NT;
    const int k_begin = blockIdx.y * k_split, k_end = min(K, k_begin + k_split);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[NT];
#pragma unroll
    for (int n = 0; n < NT; ++n) wmma::fill_fragment(acc[n], 0.0f);
    const bf16* w_rows = W + static_cast<int64_t>(r0) * S;
    for (int k0 = k_begin + warp * kStep; k0 < k_end; k0 += kWarps * kStep) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a[kAhead];
#pragma unroll
        for (int u = 0; u < kAhead; ++u) wmma::load_matrix_sync(a[u], w_rows + k0 + 16 * u, static_cast<unsigned>(S));
#pragma unroll
        for (int u = 0; u < kAhead; ++u) {
#pragma unroll
            for (int n = 0; n < NT; ++n) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                wmma::load_matrix_sync(b, x + static_cast<int64_t>(16 * n) * S + k0 + 16 * u, static_cast<unsigned>(S));
                wmma::mma_sync(acc[n], a[u], b, acc[n]);
            }
        }
    }
#pragma unroll
    for (int n = 0; n < NT; ++n) wmma::store_matrix_sync(sums + warp * 16 * width + 16 * n, acc[n], width, wmma::mem_row_major);
    __syncthreads();
    for (int i = threadIdx.x; i < 16 * width; i += blockDim.x) {
        const int r = i / width, t = i % width;
        if (t >= T || r0 + r >= R) continue;
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) s += sums[w * 16 * width + i];
        float* dst = y + static_cast<int64_t>(t) * R + r0 + r;
        if (gridDim.y > 1) {
            atomicAdd(dst, s);
        } else {
            *dst = beta != 0.0f ? beta * *dst + s : s;
        }
    }
#else
    __trap();  // built for a GPU without BF16 tensor cores: fail loudly, never return nothing
#endif
}

// Blocks over the width for R rows of width K: enough blocks to cover the SMs about twice, each split
// a whole number of the warps' steps.
inline int stream_product_splits(int R, int K, int sms) {
    const int row_blocks = (R + 15) / 16, max_splits = K / (kWarps * kStep);
    int splits = 1;
    while (splits * 2 <= max_splits && row_blocks * splits < 2 * sms) splits *= 2;
    return splits;
}

// Rows of x the kernel reads for T tokens (4 or 8 whole 16-token tiles): x must have room for them.
inline int stream_product_rows(int T) { return T <= 64 ? 64 : 128; }

inline size_t stream_product_smem(int NT) { return static_cast<size_t>(kWarps) * 16 * 16 * NT * sizeof(float); }

// Once before any launch (and outside graph capture): the 8-tile kernel's shared memory is above the
// 48 KB a block gets unasked.
inline cudaError_t stream_product_init() {
    return cudaFuncSetAttribute(stream_product_kernel<8>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(stream_product_smem(8)));
}

// y (+)= W x for T <= 128 tokens: W R x K BF16 stored S wide (R a multiple of 16, K of 64, S of 16),
// x T rows S wide with room for stream_product_rows(T) rows, y T x R float32. `splits` from stream_product_splits; where
// it is above 1 and beta is 0, y is zeroed first; stream_product_init() must have run. Returns false
// where the shape does not fit.
inline bool launch_stream_product(cudaStream_t st, const bf16* W, int R, int K, int64_t S, const bf16* x, int T, float* y,
                                  float beta, int splits) {
    const int NT = (T + 15) / 16;
    if (T < 1 || NT > 8 || R % 16 || K % kStep || S % 16 || splits < 1 || K % splits || (K / splits) % kStep) return false;
    if (splits > 1 && beta == 0.0f) cudaMemsetAsync(y, 0, static_cast<size_t>(T) * R * sizeof(float), st);
    const dim3 grid((R + 15) / 16, splits);
    const size_t smem = stream_product_smem(NT <= 4 ? 4 : 8);
    if (NT <= 4) {
        stream_product_kernel<4><<<grid, 32 * kWarps, smem, st>>>(W, S, K, x, T, y, R, beta, K / splits);
    } else {
        stream_product_kernel<8><<<grid, 32 * kWarps, smem, st>>>(W, S, K, x, T, y, R, beta, K / splits);
    }
    return true;
}

}  // namespace stream_product
}  // namespace vla_edge
