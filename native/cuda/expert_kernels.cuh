// The expert loop's kernels (native/cuda/expert_loop.cu), in a header of their own so that
// benchmarks/cuda_expert_kernels.cu can time and check each one alone on the GPU machine, which
// compiles that file in seconds where the whole native core takes minutes. Included by several
// translation units of one program (the expert, prefix and vision loops): its non-template kernels are
// `static`, or their host stubs would be defined twice (templates and inline functions may be). Not an
// unnamed namespace: nvcc's generated stubs then cannot tell it from an includer's own
// (benchmarks/cuda_expert_kernels.cu failed so under nvcc 13.0).
#pragma once

#include "cuda_expert_loop.h"
#include "attention_tile_kernel.cuh"  // attention_tile_kernel, attention_merge_rows_kernel
#include "device_math.cuh"            // gelu_tanh, rope_cache_pair, warp_sum, warp_max
#include "mma_primitives.cuh"         // cp.async
#include "rope_kernels.cuh"            // rope_cache_kernel, rope_table_kernel

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace vla_edge {
namespace expert_kernels {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = 16;  // attention: query rows (token x head) per block, one WMMA tile
constexpr int kSplitKeys = 128;    // attention: keys per block, 16 per warp

__device__ inline float load(const void* p, CudaElem type, int64_t i) {
    switch (type) {
        case CudaElem::f32: return static_cast<const float*>(p)[i];
        case CudaElem::f16: return __half2float(static_cast<const __half*>(p)[i]);
        default: return __bfloat162float(static_cast<const bf16*>(p)[i]);
    }
}

__device__ inline void store(float* p, float v) { *p = v; }
__device__ inline void store(bf16* p, float v) { *p = __float2bfloat16(v); }

inline int blocks(int64_t n, int per) { return static_cast<int>((n + per - 1) / per); }

// ---- programmatic dependent launch (opt-in: VLA_EDGE_CUDA_PDL=1, compute capability 9.0+)
// Why: a layer and step of the expert runs ten kernels of a few microseconds each, much of it each
// kernel's start and drain (H100 profile, 2026-12-07: the adaptive norm 3.7 us for 50 rows). Launched
// with programmatic stream serialization, a kernel's blocks become resident while the kernel before it
// still runs, then wait in pdl_prologue() until that kernel has finished and its writes are visible;
// each of our kernels lets the next launch as soon as all of its own blocks run. A cuBLAS kernel
// before ours is waited for the same way; one after ours is launched as usual. A loop sets the flag
// around its enqueue (PdlScope), so the attribute lands in its captured graph; thread-local, so that
// a loop capturing on another thread is not affected. Every kernel launched through launch_kernel
// must begin with pdl_prologue().
inline thread_local bool pdl_launches = false;

struct PdlScope {
    bool saved;
    explicit PdlScope(bool on) : saved(pdl_launches) { pdl_launches = on; }
    ~PdlScope() { pdl_launches = saved; }
    PdlScope(const PdlScope&) = delete;
    PdlScope& operator=(const PdlScope&) = delete;
};

// pdl_prologue(): mma_primitives.cuh (the device half, which the emulated kernels share)

// kernel(args...) launched with one launch attribute.
template <typename... Params, typename... Args>
static inline void launch_with(cudaLaunchAttribute attr, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                               cudaStream_t st, Args&&... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// kernel<<<grid, block, smem, st>>>(args...), with the programmatic attribute where the flag is set.
// `static`: the kernel pointer is the calling translation unit's own stub (tile_kernel_for says why).
template <typename... Params, typename... Args>
static inline void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                                 Args&&... args) {
    if (!pdl_launches) {
        kernel<<<grid, block, smem, st>>>(std::forward<Args>(args)...);
        return;
    }
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    launch_with(attr, kernel, grid, block, smem, st, std::forward<Args>(args)...);
}

// The same launch made cooperative (every block resident at once, or cudaErrorCooperativeLaunchTooLarge),
// for a kernel with a grid barrier (grid_barrier.cuh); never programmatic: its blocks would become
// resident while the kernel before still holds SMs.
template <typename... Params, typename... Args>
static inline void launch_cooperative(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                                      Args&&... args) {
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeCooperative;
    attr.val.cooperative = 1;
    launch_with(attr, kernel, grid, block, smem, st, std::forward<Args>(args)...);
}

// warp_sum, warp_max: device_math.cuh

// Sum over the block; every thread gets it (each warp reduces the warps' partials itself).
// `partial` holds one float per warp; a block may call this again with the same `partial`.
__device__ inline float block_sum(float v, float* partial) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();  // a previous call's readers are done with `partial`
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? partial[lane] : 0.0f);
}

// x[t] = W xt[t] + b: the action projection in (action_dim is small: one block per token).
static __global__ void action_in_kernel(const float* xt, int A, CudaMatrix W, const float* b, float* x, int E) {
    pdl_prologue();
    extern __shared__ float row[];
    const int t = blockIdx.x;
    for (int a = threadIdx.x; a < A; a += blockDim.x) row[a] = xt[static_cast<int64_t>(t) * A + a];
    __syncthreads();
    for (int o = threadIdx.x; o < E; o += blockDim.x) {
        float acc = 0.0f;
        for (int a = 0; a < A; ++a) acc += load(W.data, W.type, o * W.stride + a) * row[a];
        x[static_cast<int64_t>(t) * E + o] = acc + b[o];
    }
}

__device__ inline void store4(float* p, float a, float b, float c, float d) { *reinterpret_cast<float4*>(p) = {a, b, c, d}; }
__device__ inline void store4(bf16* p, float a, float b, float c, float d) {
    __nv_bfloat162* q = reinterpret_cast<__nv_bfloat162*>(p);
    q[0] = __floats2bfloat162_rn(a, b);
    q[1] = __floats2bfloat162_rn(c, d);
}
template <typename T>
__device__ inline bool aligned_to(const T* p, unsigned bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Adaptive RMSNorm, one block per token: y = x / rms(x) * (1 + scale) + shift, written in the
// type the next product reads (BF16 for the layer products: no separate cast kernel). With `vec`
// (the default since the H100 run of 2026-12-07, fifth session; VLA_EDGE_CUDA_VECTOR_NORMS=0 turns it
// off) and where the widths and addresses allow (the
// full model: E = 1024 or 2048, all aligned), each thread holds up to kNormVec float4 of x, scale
// and shift in registers, all loaded before the sum, so the block waits on one round of loads
// instead of the row read twice and the modulation read after the sum: 1.8 us alone for the
// expert's 50 rows where the first form took 2.9 (H100 kernel bench, 2026-12-07). Same arithmetic
// per element; the sum of squares adds in another order (2e-5 rel-L2 between the two forms).
constexpr int kNormVec = 2;
// Column of this thread's j-th float4 of a row (the rows of the norms: one block per row).
__device__ inline int norm_slot(int j) { return 4 * (threadIdx.x + j * blockDim.x); }
// Whether a row of n floats fits the threads' float4 slots, with every row pointer 16-byte aligned.
template <typename... Rows>
__device__ inline bool norm_slots_fit(int n, const Rows*... rows) {
    return n % 4 == 0 && n <= 4 * kNormVec * static_cast<int>(blockDim.x) && ((rows == nullptr || aligned_to(rows, 16)) && ...);
}
// The thread's float4 slots of row p (n floats); slots past n are left as they are and never read.
__device__ inline void load_slots(const float* p, int n, float4 (&v)[kNormVec]) {
#pragma unroll
    for (int j = 0; j < kNormVec; ++j)
        if (norm_slot(j) < n) v[j] = *reinterpret_cast<const float4*>(p + norm_slot(j));
}
template <typename Out>
__global__ void ada_norm_kernel(const float* x, int E, const float* scale1, const float* shift, float eps, Out* y,
                                int64_t ld, bool vec) {
    pdl_prologue();
    __shared__ float partial[32];
    const float* xr = x + static_cast<int64_t>(blockIdx.x) * E;
    Out* yr = y + blockIdx.x * ld;
    if (vec && norm_slots_fit(E, xr, scale1, shift) && aligned_to(yr, 4 * sizeof(Out))) {
        float4 xv[kNormVec], sv[kNormVec], hv[kNormVec];
        load_slots(xr, E, xv);
        load_slots(scale1, E, sv);
        load_slots(shift, E, hv);
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < kNormVec; ++j)
            if (norm_slot(j) < E) ss += xv[j].x * xv[j].x + xv[j].y * xv[j].y + xv[j].z * xv[j].z + xv[j].w * xv[j].w;
        const float r = rsqrtf(block_sum(ss, partial) / E + eps);
#pragma unroll
        for (int j = 0; j < kNormVec; ++j) {
            if (norm_slot(j) < E) {
                store4(yr + norm_slot(j), xv[j].x * r * sv[j].x + hv[j].x, xv[j].y * r * sv[j].y + hv[j].y,
                       xv[j].z * r * sv[j].z + hv[j].z, xv[j].w * r * sv[j].w + hv[j].w);
            }
        }
        return;
    }
    float ss = 0.0f;
    for (int i = threadIdx.x; i < E; i += blockDim.x) ss += xr[i] * xr[i];
    const float r = rsqrtf(block_sum(ss, partial) / E + eps);
    for (int i = threadIdx.x; i < E; i += blockDim.x) store(yr + i, xr[i] * r * scale1[i] + shift[i]);
}

// rope_cache_kernel, rope_table_kernel: rope_kernels.cuh

// Attention of every query head of one observation (one K/V head shared by all of them), split over
// the keys as flash-decoding does: block (16 query rows, 128 keys, observation) writes its rows'
// unnormalised outputs and (max score, sum of weights) for its keys; attention_combine_kernel merges
// the splits. Many small blocks instead of one block per 16 rows over every key: the first version
// (2026-12-06, H100) took ~60 us per call, each warp waiting on one K/V fragment load after another.
// Each warp here loads all of its fragments before it multiplies. Rows are token-major, head-minor.
// Keys past `keys` (up to the next multiple of 16) are read but weigh zero: the runtime pads each
// range and zero-fills the cache, so those rows hold finite values.
template <int D>
__global__ void __launch_bounds__(kThreads) attention_split_kernel(const __half* q16, const __half* kc, const __half* vc,
                                                                   const int* obs_base, const int* obs_keys, int horizon,
                                                                   int heads, int splits, float scale, float* part_o,
                                                                   float2* part_ml) {
    using namespace nvcuda;
    pdl_prologue();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    __shared__ __align__(128) __half qs[kRowsPerBlock * D];
    __shared__ __align__(128) float S[kRowsPerBlock * kSplitKeys];
    __shared__ __align__(128) __half P[kRowsPerBlock * kSplitKeys];
    __shared__ __align__(128) float O[kRowsPerBlock * D];
    const int s = blockIdx.z, split = blockIdx.y, rows_total = horizon * heads, row0 = blockIdx.x * kRowsPerBlock;
    const int keys = obs_keys[s], key0 = split * kSplitKeys;
    if (key0 >= keys) return;  // this observation has fewer splits than the batch's longest
    const int n = min(kSplitKeys, keys - key0), tiles = (n + 15) / 16;
    const int64_t base = obs_base[s] + key0;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    const uint4* qg = reinterpret_cast<const uint4*>(q16 + (static_cast<int64_t>(s) * rows_total + row0) * D);
    for (int i = threadIdx.x; i < kRowsPerBlock * D / 8; i += blockDim.x) {
        const bool real = row0 + i / (D / 8) < rows_total;
        reinterpret_cast<uint4*>(qs)[i] = real ? qg[i] : make_uint4(0, 0, 0, 0);
    }
    __syncthreads();

    constexpr int kAhead = D / 16 < 8 ? D / 16 : 8;  // K fragments in flight per warp
    if (warp < tiles) {  // S = Q K^T: warp w takes keys [16w, 16w + 16) of the split
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        const __half* kb = kc + (base + warp * 16) * D;
        for (int g = 0; g < D / 16; g += kAhead) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[kAhead];
#pragma unroll
            for (int i = 0; i < kAhead; ++i) wmma::load_matrix_sync(b[i], kb + (g + i) * 16, D);
#pragma unroll
            for (int i = 0; i < kAhead; ++i) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::load_matrix_sync(a, qs + (g + i) * 16, D);
                wmma::mma_sync(acc, a, b[i], acc);
            }
        }
        wmma::store_matrix_sync(S + warp * 16, acc, kSplitKeys, wmma::mem_row_major);
    }
    __syncthreads();

    for (int r = warp; r < kRowsPerBlock; r += kThreads / 32) {  // this split's max and weights per row
        const float* sr = S + r * kSplitKeys;
        float m = -INFINITY;
        for (int j = lane; j < n; j += 32) m = fmaxf(m, sr[j]);
        m = warp_max(m);
        float l = 0.0f;
        for (int j = lane; j < tiles * 16; j += 32) {
            const float p = j < n ? expf((sr[j] - m) * scale) : 0.0f;
            P[r * kSplitKeys + j] = __float2half(p);
            l += p;
        }
        l = warp_sum(l);
        if (lane == 0 && row0 + r < rows_total) {
            part_ml[(static_cast<int64_t>(s) * splits + split) * rows_total + row0 + r] = make_float2(m, l);
        }
    }
    __syncthreads();

    for (int dt = warp; dt < D / 16; dt += kThreads / 32) {  // O = P V, 16 output columns at a time
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.0f);
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[kSplitKeys / 16];
#pragma unroll
        for (int k = 0; k < kSplitKeys / 16; ++k) {
            if (k < tiles) wmma::load_matrix_sync(b[k], vc + (base + k * 16) * D + dt * 16, D);
        }
#pragma unroll
        for (int k = 0; k < kSplitKeys / 16; ++k) {
            if (k < tiles) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::load_matrix_sync(a, P + k * 16, kSplitKeys);
                wmma::mma_sync(acc, a, b[k], acc);
            }
        }
        wmma::store_matrix_sync(O + dt * 16, acc, D, wmma::mem_row_major);
    }
    __syncthreads();

    float* dst = part_o + ((static_cast<int64_t>(s) * splits + split) * rows_total + row0) * D;
    for (int i = threadIdx.x; i < kRowsPerBlock * D; i += blockDim.x) {
        if (row0 + i / D < rows_total) dst[i] = O[i];
    }
#else
    __trap();  // built for a GPU without F16 tensor cores: fail loudly, never return nothing
#endif
}

// out = sum_i w_i O_i / sum_i w_i l_i over the splits, w_i = exp((m_i - max m) * scale); one block
// per query row, in BF16 for the output projection. Split i of observation s holds its rows at
// (s * splits + i) * rows_ld + row.
static __global__ void attention_combine_kernel(const float* part_o, const float2* part_ml, const int* obs_keys,
                                         int keys_per_split, int horizon, int heads, int rows_ld, int D, int splits,
                                         float scale, bf16* out, int64_t ld_out) {
    pdl_prologue();
    const int s = blockIdx.y, row = blockIdx.x;
    const int n = (obs_keys[s] + keys_per_split - 1) / keys_per_split;
    const int64_t first = static_cast<int64_t>(s) * splits * rows_ld + row;
    float m = -INFINITY;
    for (int i = 0; i < n; ++i) m = fmaxf(m, part_ml[first + i * int64_t{rows_ld}].x);
    float l = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float2 ml = part_ml[first + i * int64_t{rows_ld}];
        l += expf((ml.x - m) * scale) * ml.y;
    }
    const int64_t t = static_cast<int64_t>(s) * horizon + row / heads;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float acc = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int64_t at = first + i * int64_t{rows_ld};
            acc += expf((part_ml[at].x - m) * scale) * part_o[at * D + c];
        }
        out[t * ld_out + (row % heads) * D + c] = __float2bfloat16(acc / l);
    }
}

// attention_merge_rows_kernel (the tile forms' merge): attention_tile_kernel.cuh

// Launch shapes shared by the loop and the kernel bench.
static inline void launch_rope_cache(cudaStream_t st, int T, const float* qkv, int heads, int d, const int* pos,
                                     const int* rows, float theta_scale, __half* q16, __half* kc, __half* vc) {
    const int threads = d / 2 < 32 ? 32 : d / 2;  // one per pair of columns (j, j + d / 2)
    launch_kernel(rope_cache_kernel, dim3(T, heads + 2), threads, 0, st, qkv, heads, d, pos, rows, theta_scale, q16, kc, vc);
}

// merge_warps: 0 runs attention_combine_kernel (the split form's merge), 1 or 2 the merge with that
// many warps per query row (the tile forms').
static inline void launch_attention_merge(int merge_warps, cudaStream_t st, int B, int horizon, int heads, int d,
                                          const float* part_o, const float2* part_ml, const int* obs_keys, int keys_per_split,
                                          int rows_ld, int splits, float scale, bf16* out, int64_t ld_out) {
    if (merge_warps == 0) {
        launch_kernel(attention_combine_kernel, dim3(horizon * heads, B), d < kThreads ? d : kThreads, 0, st, part_o, part_ml,
                      obs_keys, keys_per_split, horizon, heads, rows_ld, d, splits, scale, out, ld_out);
        return;
    }
    const bool two = merge_warps == 2;
    const dim3 grid(blocks((two ? 2 : 1) * int64_t{horizon} * heads, kMergeWarps), B);
    auto* kernel = two ? (d == 64 ? attention_merge_rows_kernel<64, 2> : d == 128 ? attention_merge_rows_kernel<128, 2>
                                                                                    : attention_merge_rows_kernel<256, 2>)
                       : (d == 64 ? attention_merge_rows_kernel<64, 1> : d == 128 ? attention_merge_rows_kernel<128, 1>
                                                                                    : attention_merge_rows_kernel<256, 1>);
    launch_kernel(kernel, grid, 32 * kMergeWarps, 0, st, part_o, part_ml, obs_keys, keys_per_split, horizon, heads, rows_ld,
                  splits, scale, out, ld_out);
}

// ---- attention, second form (attention_tile_kernel, TileLayout): attention_tile_kernel.cuh

// Attention forms (both Gemma loops read VLA_EDGE_CUDA_ATTENTION). `tile64` / `tile32`: each split's
// keys and values staged in shared memory for 64 query rows, merged by attention_merge_rows_kernel;
// `tile64w8` (the default since the H100 run of 2026-12-07, fifth session): tile64 with two warps per
// 16-row tile (eight per block). `tile128w8`: the same over 128-key splits, half the partials to write
// and merge where there are query rows enough to fill the GPU without more splits (the prefix's
// thousands; opt-in, 182 KB of shared memory per block at head_dim 256: Hopper only, elsewhere
// prepare_attention runs tile64w8). `split`: the first form, 16 query rows per block, K/V fragments read from global memory
// (docs/gpu.md). `flash` (the prefix loop's default since 2026-12-07's seventh session): flash_attention.cuh,
// its own launcher and splits.
enum class AttentionForm { split, tile64, tile32, tile64w8, tile128w8, flash };

inline const char* form_name(AttentionForm f) {
    switch (f) {
        case AttentionForm::split: return "split128";
        case AttentionForm::tile32: return "tile32";
        case AttentionForm::tile64w8: return "tile64w8";
        case AttentionForm::tile128w8: return "tile128w8";
        case AttentionForm::flash: return "flash";
        default: return "tile64";
    }
}
inline int keys_per_split(AttentionForm f) {
    return f == AttentionForm::split ? kSplitKeys : f == AttentionForm::tile32 ? 32 : f == AttentionForm::tile128w8 ? 128 : 64;
}
// Splits (blocks along the keys) a form takes for `keys` keys.
inline int attention_splits(AttentionForm f, int keys) { return (keys + keys_per_split(f) - 1) / keys_per_split(f); }

// Rows per (observation, split) in the attention partials for `rows` query rows: the tile kernels
// write whole 16-row tiles.
inline int attention_rows_ld(AttentionForm f, int rows) { return f == AttentionForm::split ? rows : (rows + 15) / 16 * 16; }

// Whether a form has the RoPE-in and merge-in variants (the expert's default, tile64w8, alone: the
// others run the rope kernel before them and the merge kernel after).
inline bool rope_in_form(AttentionForm form) { return form == AttentionForm::tile64w8; }

// The most splits the merge in the launch takes (merge_row_loads_first holds a row's columns of all of them).
constexpr int kMergeInSplits = 16;

// Query rows are token-major, head-minor, `horizon x heads` per observation (rows_total); the
// partial outputs are rows_ld apart per (observation, split). With rope.qkv set (the expert loop's
// VLA_EDGE_CUDA_ROPE_IN_ATTENTION=1; tile64w8 only: rope_in_form), the tile kernel's RoPE-in form reads
// the queries and the chunk's own keys and values from rope instead of q and the cache (TileRope). With
// merge.out set (VLA_EDGE_CUDA_MERGE_IN_ATTENTION=1, the same form, at most kMergeInSplits splits, a grid
// the device holds at once: the caller checks), the launch is cooperative and merges the splits into
// merge.out itself (TileMerge): no merge kernel after it.
template <int D>
static inline void launch_attention_at(AttentionForm form, int B, int rows_total, int rows_ld, int splits, cudaStream_t st,
                                const __half* q, const __half* k, const __half* v, const int* base, const int* keys,
                                int horizon, int heads, float scale, float* part_o, float2* part_ml, const TileRope& rope,
                                const TileMerge& merge) {
    if ((rope.qkv || merge.out) && !rope_in_form(form)) {  // never attend to unrotated rows, never leave them unmerged
        throw std::invalid_argument(std::string("attention form ") + form_name(form) + " has no RoPE-in or merge-in variant");
    }
    if (merge.out && splits > kMergeInSplits) {
        throw std::invalid_argument("the merge in the attention takes at most " + std::to_string(kMergeInSplits) + " splits");
    }
    const dim3 tiles(blocks(rows_total, kTileRows), splits, B);
    if (merge.out) {
        auto* kernel = rope.qkv ? attention_tile_kernel<D, 64, 2, true, true> : attention_tile_kernel<D, 64, 2, false, true>;
        launch_cooperative(kernel, tiles, 64 * kTileWarps, TileLayout<D, 64>::bytes, st, q, k, v, base, keys, rows_total, rows_ld,
                           splits, scale, part_o, part_ml, rope, merge);
        return;
    }
    switch (form) {
        case AttentionForm::split:
            launch_kernel(attention_split_kernel<D>, dim3(blocks(rows_total, kRowsPerBlock), splits, B), kThreads, 0, st, q, k,
                          v, base, keys, horizon, heads, splits, scale, part_o, part_ml);
            break;
        case AttentionForm::tile32:
            launch_kernel(attention_tile_kernel<D, 32>, tiles, 32 * kTileWarps, TileLayout<D, 32>::bytes, st, q, k, v, base,
                          keys, rows_total, rows_ld, splits, scale, part_o, part_ml, TileRope{}, TileMerge{});
            break;
        case AttentionForm::tile64w8:
            launch_kernel(rope.qkv ? attention_tile_kernel<D, 64, 2, true> : attention_tile_kernel<D, 64, 2, false>, tiles,
                          64 * kTileWarps, TileLayout<D, 64>::bytes, st, q, k, v, base, keys, rows_total, rows_ld, splits, scale,
                          part_o, part_ml, rope, TileMerge{});
            break;
        case AttentionForm::tile128w8:
            launch_kernel(attention_tile_kernel<D, 128, 2>, tiles, 64 * kTileWarps, TileLayout<D, 128>::bytes, st, q, k, v,
                          base, keys, rows_total, rows_ld, splits, scale, part_o, part_ml, TileRope{}, TileMerge{});
            break;
        default:
            launch_kernel(attention_tile_kernel<D, 64>, tiles, 32 * kTileWarps, TileLayout<D, 64>::bytes, st, q, k, v, base,
                          keys, rows_total, rows_ld, splits, scale, part_o, part_ml, TileRope{}, TileMerge{});
    }
}

// The tile kernel a form launches at head_dim d and its dynamic shared memory: the attribute
// cudaFuncAttributeMaxDynamicSharedMemorySize must allow that much before the first launch.
// `static`, like the launchers: nvcc gives every translation unit its own host stub of a template
// kernel (a local symbol), and so its own kernel, while an inline function is one definition for the
// whole program. The attribute must be set through the stub of the unit that launches: an inline
// tile_kernel_for set it on one loop's kernel only (the prefix loop's launch then failed on the GPU,
// 2026-12-07, with the expert loop's attribute set and its own not).
struct TileKernel {
    const void* fn;
    size_t smem;
};
static inline TileKernel tile_kernel_for(int d, AttentionForm form, bool rope_in = false, bool merge_in = false) {
    const bool wide = form == AttentionForm::tile64;
    auto pick = [](auto* kernel, size_t smem) { return TileKernel{reinterpret_cast<const void*>(kernel), smem}; };
    if (form == AttentionForm::tile64w8 && merge_in) {
        constexpr size_t b64 = TileLayout<64, 64>::bytes, b128 = TileLayout<128, 64>::bytes, b256 = TileLayout<256, 64>::bytes;
        if (d == 64) return rope_in ? pick(attention_tile_kernel<64, 64, 2, true, true>, b64)
                                    : pick(attention_tile_kernel<64, 64, 2, false, true>, b64);
        if (d == 128) return rope_in ? pick(attention_tile_kernel<128, 64, 2, true, true>, b128)
                                     : pick(attention_tile_kernel<128, 64, 2, false, true>, b128);
        return rope_in ? pick(attention_tile_kernel<256, 64, 2, true, true>, b256)
                       : pick(attention_tile_kernel<256, 64, 2, false, true>, b256);
    }
    if (form == AttentionForm::tile64w8 && rope_in) {
        if (d == 64) return pick(attention_tile_kernel<64, 64, 2, true>, TileLayout<64, 64>::bytes);
        if (d == 128) return pick(attention_tile_kernel<128, 64, 2, true>, TileLayout<128, 64>::bytes);
        return pick(attention_tile_kernel<256, 64, 2, true>, TileLayout<256, 64>::bytes);
    }
    if (form == AttentionForm::tile64w8) {
        if (d == 64) return pick(attention_tile_kernel<64, 64, 2>, TileLayout<64, 64>::bytes);
        if (d == 128) return pick(attention_tile_kernel<128, 64, 2>, TileLayout<128, 64>::bytes);
        return pick(attention_tile_kernel<256, 64, 2>, TileLayout<256, 64>::bytes);
    }
    if (form == AttentionForm::tile128w8) {
        if (d == 64) return pick(attention_tile_kernel<64, 128, 2>, TileLayout<64, 128>::bytes);
        if (d == 128) return pick(attention_tile_kernel<128, 128, 2>, TileLayout<128, 128>::bytes);
        return pick(attention_tile_kernel<256, 128, 2>, TileLayout<256, 128>::bytes);
    }
    if (d == 64) return wide ? pick(attention_tile_kernel<64, 64>, TileLayout<64, 64>::bytes)
                             : pick(attention_tile_kernel<64, 32>, TileLayout<64, 32>::bytes);
    if (d == 128) return wide ? pick(attention_tile_kernel<128, 64>, TileLayout<128, 64>::bytes)
                              : pick(attention_tile_kernel<128, 32>, TileLayout<128, 32>::bytes);
    return wide ? pick(attention_tile_kernel<256, 64>, TileLayout<256, 64>::bytes)
                : pick(attention_tile_kernel<256, 32>, TileLayout<256, 32>::bytes);
}

// The same for head_dim 64, 128 or 256, chosen at run time.
static inline void launch_attention(int d, AttentionForm form, int B, int rows_total, int rows_ld, int splits, cudaStream_t st,
                             const __half* q, const __half* k, const __half* v, const int* base, const int* keys,
                             int horizon, int heads, float scale, float* part_o, float2* part_ml,
                             const TileRope& rope = TileRope{}, const TileMerge& merge = TileMerge{}) {
    auto* launch = d == 64 ? launch_attention_at<64> : d == 128 ? launch_attention_at<128> : launch_attention_at<256>;
    launch(form, B, rows_total, rows_ld, splits, st, q, k, v, base, keys, horizon, heads, scale, part_o, part_ml, rope, merge);
}

__device__ inline float to_f32(float v) { return v; }
__device__ inline float to_f32(bf16 v) { return __bfloat162float(v); }

// gelu_tanh(gate) * up from the fused [gate | up] product (float32, or BF16 as ggml-CUDA's products
// write it), in BF16 for the down projection.
template <typename In>
__global__ void geglu_kernel(const In* gu, int F, int64_t n, bf16* g, int64_t ld) {
    pdl_prologue();
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    const int64_t t = i / F;
    const int j = static_cast<int>(i % F);
    const float a = to_f32(gu[t * 2 * F + j]), u = to_f32(gu[t * 2 * F + F + j]);
    g[t * ld + j] = __float2bfloat16(gelu_tanh(a) * u);
}

// Eight consecutive elements of a 16-byte aligned row as floats.
__device__ inline void load8(const float* p, float* v) {
    const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ inline void load8(const bf16* p, float* v) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const float2 f = __bfloat1622float2(h[k]);
        v[2 * k] = f.x;
        v[2 * k + 1] = f.y;
    }
}

// The same, eight elements per thread with 16-byte loads and stores: the prefix's GeGLU (582 x 16384
// at 2 views) took ~42 us per layer one BF16 element per thread, on data that streams in ~19 us (H100
// profile, 2026-12-07). Same arithmetic per element. n8 = tokens x F / 8.
template <typename In>
__global__ void geglu8_kernel(const In* gu, int F, int64_t n8, bf16* g, int64_t ld) {
    pdl_prologue();
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= n8) return;
    const int64_t e = 8 * i, t = e / F;
    const int j = static_cast<int>(e % F);
    float a[8], u[8];
    load8(gu + t * 2 * F + j, a);
    load8(gu + t * 2 * F + F + j, u);
    uint4 out;
    __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
    for (int k = 0; k < 4; ++k) o[k] = __floats2bfloat162_rn(gelu_tanh(a[2 * k]) * u[2 * k], gelu_tanh(a[2 * k + 1]) * u[2 * k + 1]);
    *reinterpret_cast<uint4*>(g + t * ld + j) = out;
}

// g = gelu_tanh(gate) * up for T tokens (gu [T][gate F | up F], g T rows `ld` apart): eight elements
// per thread where F, ld and both pointers allow 16-byte accesses, else one.
template <typename In>
static inline void launch_geglu(cudaStream_t st, const In* gu, int F, int T, bf16* g, int64_t ld) {
    const int64_t n = int64_t{T} * F;
    const bool wide = F % 8 == 0 && ld % 8 == 0 && reinterpret_cast<uintptr_t>(gu) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(g) % 16 == 0;
    if (wide) {
        launch_kernel(geglu8_kernel<In>, blocks(n / 8, kThreads), kThreads, 0, st, gu, F, n / 8, g, ld);
    } else {
        launch_kernel(geglu_kernel<In>, blocks(n, kThreads), kThreads, 0, st, gu, F, n, g, ld);
    }
}

// xt += dt * (W h + b): the action projection out and the Euler step, one warp per output.
static __global__ void action_out_kernel(const float* h, int E, CudaMatrix W, const float* b, float dt, float* xt, int A,
                                  int T) {
    pdl_prologue();
    const int w = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (w >= T * A) return;
    const int t = w / A, a = w % A;
    float acc = 0.0f;
    for (int k = lane; k < E; k += 32) acc += load(W.data, W.type, a * W.stride + k) * h[static_cast<int64_t>(t) * E + k];
    acc = warp_sum(acc);
    if (lane == 0) xt[w] += dt * (acc + b[a]);
}


}  // namespace expert_kernels
}  // namespace vla_edge
