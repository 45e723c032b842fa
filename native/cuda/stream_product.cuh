// A layer product for the expert's 50-128 token inputs, where the weights dominate: cuBLAS spends
// ~22 us on a layer's four products at 50 tokens on an H100, twice the 10.3 us the weights take to
// stream once at the datasheet bandwidth (docs/gpu.md, "Kernel bench"). Each block owns 128 weight
// rows (16 per warp) and a range of the input columns; per 64 columns the block stages every token's
// slice of x in shared memory once (tokens past T as zeros), and each warp multiplies its own 16
// weight rows, read straight from global memory one chunk ahead, with all of them. Every weight byte
// is read once, x once per block (half the weights' bytes at 64 tokens), and the range of columns is
// split over blocks until the SMs are covered, the parts meeting in the output through atomic adds.
// One of the candidates TunedProducts races against cuBLAS (VLA_EDGE_CUDA_STREAM_PRODUCTS=1): it
// runs only where it matched cuBLAS's output and was faster. Only templates and inline functions, so
// that several translation units may include it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>

namespace vla_edge {
namespace stream_product {

using bf16 = __nv_bfloat16;
constexpr int kWarps = 8;           // warps per block, 16 weight rows each
constexpr int kRows = 16 * kWarps;  // weight rows per block
constexpr int kChunk = 64;          // input columns staged per step
constexpr int kLd = kChunk + 8;     // staged row width in elements: rows 144 bytes apart spread the banks
constexpr int kMaxTokens = 128;

// y[t][r] = (beta y[t][r] or 0) + sum_k W[r][k] x[t][k] for this block's rows over the input columns
// [blockIdx.y k_split, +k_split), for the NT 16-token tiles covering T. With gridDim.y > 1 each block
// adds its part atomically: y must already hold its starting value (the launcher zeroes it for beta 0).
template <int NT>
__global__ void __launch_bounds__(32 * kWarps) stream_product_kernel(const bf16* W, int64_t S, const bf16* x, int T, float* y,
                                                                     int R, float beta, int k_split) {
    using namespace nvcuda;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    extern __shared__ __align__(32) unsigned char smem[];
    bf16* xs = reinterpret_cast<bf16*>(smem);                                                   // [16 NT][kLd]
    float* scratch = reinterpret_cast<float*>(smem + sizeof(bf16) * 16 * NT * kLd) + 256 * (threadIdx.x / 32);  // [16][16]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r_warp = blockIdx.x * kRows + 16 * warp;
    const bool active = r_warp < R;  // warp-uniform: a warp past the last row only helps stage x
    const int k_begin = blockIdx.y * k_split, k_end = k_begin + k_split;
    const bf16* w_rows = W + static_cast<int64_t>(active ? r_warp : 0) * S;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[NT];
#pragma unroll
    for (int n = 0; n < NT; ++n) wmma::fill_fragment(acc[n], 0.0f);
    using AFrag = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
    AFrag a[kChunk / 16];
    if (active) {
#pragma unroll
        for (int u = 0; u < kChunk / 16; ++u) wmma::load_matrix_sync(a[u], w_rows + k_begin + 16 * u, static_cast<unsigned>(S));
    }
    for (int k0 = k_begin; k0 < k_end; k0 += kChunk) {
        // every token's 64 columns, 8 elements (16 bytes) per load
        for (int i = threadIdx.x; i < 16 * NT * (kChunk / 8); i += blockDim.x) {
            const int t = i / (kChunk / 8), c = (i % (kChunk / 8)) * 8;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (t < T) v = *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(t) * S + k0 + c);
            *reinterpret_cast<uint4*>(xs + t * kLd + c) = v;
        }
        __syncthreads();
        if (active) {
            const bool more = k0 + kChunk < k_end;
            AFrag next[kChunk / 16];  // the next chunk's weights in flight while this one multiplies
            if (more) {
#pragma unroll
                for (int u = 0; u < kChunk / 16; ++u)
                    wmma::load_matrix_sync(next[u], w_rows + k0 + kChunk + 16 * u, static_cast<unsigned>(S));
            }
#pragma unroll
            for (int u = 0; u < kChunk / 16; ++u) {
#pragma unroll
                for (int n = 0; n < NT; ++n) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
                    wmma::load_matrix_sync(b, xs + 16 * n * kLd + 16 * u, static_cast<unsigned>(kLd));
                    wmma::mma_sync(acc[n], a[u], b, acc[n]);
                }
            }
            if (more) {
#pragma unroll
                for (int u = 0; u < kChunk / 16; ++u) a[u] = next[u];
            }
        }
        __syncthreads();  // before the next chunk overwrites xs
    }
    if (!active) return;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
        wmma::store_matrix_sync(scratch, acc[n], 16, wmma::mem_col_major);  // scratch[j * 16 + r]: token j, row r
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
            const int t = 16 * n + e / 16;
            if (t >= T) break;  // e only grows: every later element is past T too
            float* dst = y + static_cast<int64_t>(t) * R + r_warp + e % 16;
            if (gridDim.y > 1) {
                atomicAdd(dst, scratch[e]);
            } else {
                *dst = beta != 0.0f ? beta * *dst + scratch[e] : scratch[e];
            }
        }
        __syncwarp();  // before the next tile overwrites scratch
    }
#else
    __trap();  // built for a GPU without BF16 tensor cores: fail loudly, never return nothing
#endif
}

inline size_t stream_product_smem(int NT) {
    return sizeof(bf16) * 16 * NT * kLd + sizeof(float) * 256 * kWarps;  // 18-35 KB: no opt-in needed
}

// Whether W (R x K BF16, rows S elements apart) and T tokens fit the kernel: whole 16-row tiles,
// whole 64-column chunks, 16-byte aligned rows, at most 128 tokens.
inline bool stream_product_fits(const void* W, int R, int K, int64_t S, const void* x, int T) {
    return T >= 1 && T <= kMaxTokens && R % 16 == 0 && K % kChunk == 0 && S % 16 == 0 && K <= S &&
           reinterpret_cast<uintptr_t>(W) % 32 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
}

// The column splits to race for R rows of width K on `sms` SMs: the smallest power of two that gives
// every SM a block (each split a whole number of chunks), then half and twice that. Unused entries 0.
struct Splits {
    int n[3] = {0, 0, 0};
};
inline Splits stream_product_splits(int R, int K, int sms) {
    const int row_blocks = (R + kRows - 1) / kRows, max_splits = K / kChunk;
    int s = 1;
    while (s * 2 <= max_splits && K % (s * 2 * kChunk) == 0 && row_blocks * s < sms) s *= 2;
    Splits out;
    int i = 0;
    if (s > 1) out.n[i++] = s / 2;
    out.n[i++] = s;
    if (s * 2 <= max_splits && K % (s * 2 * kChunk) == 0) out.n[i++] = s * 2;
    return out;
}

// y (+)= W x for T tokens: W R x K BF16 stored S wide, x T rows S wide, y T x R float32 (rows R apart).
// Where `splits` is above 1, beta must be 0 (y is zeroed first) or 1. Returns false (nothing enqueued) where
// the shape does not fit (stream_product_fits) or K is not a whole number of chunks per split.
inline bool launch_stream_product(cudaStream_t st, const bf16* W, int R, int K, int64_t S, const bf16* x, int T, float* y,
                                  float beta, int splits) {
    if (!stream_product_fits(W, R, K, S, x, T) || splits < 1 || K % (splits * kChunk)) return false;
    if (splits > 1 && beta != 0.0f && beta != 1.0f) return false;  // the parts add onto y as it is
    if (splits > 1 && beta == 0.0f && cudaMemsetAsync(y, 0, sizeof(float) * T * R, st) != cudaSuccess) return false;
    const dim3 grid((R + kRows - 1) / kRows, splits);
    const int NT = (T + 15) / 16, k_split = K / splits;
    const size_t smem = stream_product_smem(NT);
    switch (NT) {
#define VLA_EDGE_STREAM_CASE(N) \
    case N: stream_product_kernel<N><<<grid, 32 * kWarps, smem, st>>>(W, S, x, T, y, R, beta, k_split); break;
        VLA_EDGE_STREAM_CASE(1)
        VLA_EDGE_STREAM_CASE(2)
        VLA_EDGE_STREAM_CASE(3)
        VLA_EDGE_STREAM_CASE(4)
        VLA_EDGE_STREAM_CASE(5)
        VLA_EDGE_STREAM_CASE(6)
        VLA_EDGE_STREAM_CASE(7)
        VLA_EDGE_STREAM_CASE(8)
#undef VLA_EDGE_STREAM_CASE
        default: return false;
    }
    return true;
}

}  // namespace stream_product
}  // namespace vla_edge
