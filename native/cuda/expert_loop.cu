// The action expert's flow steps in our own CUDA code (native/src/cuda_expert_loop.h says why).
// Same arithmetic as the ggml graph of pi05_graph.cpp (build_expert_step + the chunk's Euler
// update): products on BF16 inputs with float32 accumulation and float32 outputs, float32 norms,
// RoPE and GeGLU, F16 K/V cache and F16 attention inputs with float32 scores and sums.
#include "cuda_expert_loop.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

namespace vla_edge {

namespace {

using bf16 = __nv_bfloat16;

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA expert loop: ") + what + ": " + cudaGetErrorString(e));
}

void check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        throw std::runtime_error(std::string("CUDA expert loop: ") + what + ": " + cublasGetStatusString(s));
    }
}

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

__device__ inline float warp_sum(float v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// x[t] = W xt[t] + b: the action projection in (action_dim is small: one block per token).
__global__ void action_in_kernel(const float* xt, int A, CudaMatrix W, const float* b, float* x, int E) {
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

// Adaptive RMSNorm, one block per token: y = x / rms(x) * (1 + scale) + shift, written in the
// type the next product reads (BF16 for the layer products: no separate cast kernel).
template <typename Out>
__global__ void ada_norm_kernel(const float* x, int E, const float* scale1, const float* shift, float eps, Out* y,
                                int64_t ld) {
    __shared__ float partial[32];
    const float* xr = x + static_cast<int64_t>(blockIdx.x) * E;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < E; i += blockDim.x) ss += xr[i] * xr[i];
    ss = warp_sum(ss);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = ss;
    __syncthreads();
    const int lane = threadIdx.x % 32;
    ss = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : 0.0f;
    ss = warp_sum(ss);  // every warp reduces the partials itself
    const float r = rsqrtf(ss / E + eps);
    for (int i = threadIdx.x; i < E; i += blockDim.x) store(y + blockIdx.x * ld + i, xr[i] * r * scale1[i] + shift[i]);
}

// NeoX RoPE on q and k, one block per token, as ggml-CUDA computes the angle; q goes to F16 for
// attention, k and v straight into the token's cache row (what ggml does in three kernels).
__global__ void rope_cache_kernel(const float* qkv, int heads, int d, const int* pos, const int* rows, float theta_scale,
                                  __half* q16, __half* kc, __half* vc) {
    const int t = blockIdx.x, half_d = d / 2;
    const float* src = qkv + static_cast<int64_t>(t) * (heads + 2) * d;
    const float p = static_cast<float>(pos[t]);
    const int64_t row = rows[t];
    for (int i = threadIdx.x; i < (heads + 1) * half_d; i += blockDim.x) {  // q heads, then k
        const int h = i / half_d, j = i % half_d;
        const float theta = p * powf(theta_scale, static_cast<float>(j));
        const float c = cosf(theta), s = sinf(theta);
        const float x0 = src[h * d + j], x1 = src[h * d + j + half_d];
        __half* dst = h < heads ? q16 + (static_cast<int64_t>(t) * heads + h) * d : kc + row * d;
        dst[j] = __float2half(x0 * c - x1 * s);
        dst[j + half_d] = __float2half(x0 * s + x1 * c);
    }
    for (int i = threadIdx.x; i < d; i += blockDim.x) vc[row * d + i] = __float2half(src[(heads + 1) * d + i]);
}

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
// per query row, in BF16 for the output projection.
__global__ void attention_combine_kernel(const float* part_o, const float2* part_ml, const int* obs_keys, int horizon,
                                         int heads, int D, int splits, float scale, bf16* out, int64_t ld_out) {
    const int s = blockIdx.y, row = blockIdx.x, rows_total = horizon * heads;
    const int n = (obs_keys[s] + kSplitKeys - 1) / kSplitKeys;
    const int64_t first = static_cast<int64_t>(s) * splits * rows_total + row;  // split i at first + i * rows_total
    float m = -INFINITY;
    for (int i = 0; i < n; ++i) m = fmaxf(m, part_ml[first + i * rows_total].x);
    float l = 0.0f;
    for (int i = 0; i < n; ++i) l += expf((part_ml[first + i * rows_total].x - m) * scale) * part_ml[first + i * rows_total].y;
    const int64_t t = static_cast<int64_t>(s) * horizon + row / heads;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float acc = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int64_t at = first + i * static_cast<int64_t>(rows_total);
            acc += expf((part_ml[at].x - m) * scale) * part_o[at * D + c];
        }
        out[t * ld_out + (row % heads) * D + c] = __float2bfloat16(acc / l);
    }
}

// gelu_tanh(gate) * up from the fused [gate | up] product, in BF16 for the down projection.
__global__ void geglu_kernel(const float* gu, int F, int64_t n, bf16* g, int64_t ld) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    const int64_t t = i / F;
    const int j = static_cast<int>(i % F);
    const float a = gu[t * 2 * F + j], u = gu[t * 2 * F + F + j];
    const float gelu = 0.5f * a * (1.0f + tanhf(0.7978845608028654f * a * (1.0f + 0.044715f * a * a)));
    g[t * ld + j] = __float2bfloat16(gelu * u);
}

// xt += dt * (W h + b): the action projection out and the Euler step, one warp per output.
__global__ void action_out_kernel(const float* h, int E, CudaMatrix W, const float* b, float dt, float* xt, int A,
                                  int T) {
    const int w = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (w >= T * A) return;
    const int t = w / A, a = w % A;
    float acc = 0.0f;
    for (int k = lane; k < E; k += 32) acc += load(W.data, W.type, a * W.stride + k) * h[static_cast<int64_t>(t) * E + k];
    acc = warp_sum(acc);
    if (lane == 0) xt[w] += dt * (acc + b[a]);
}

int blocks(int64_t n, int per) { return static_cast<int>((n + per - 1) / per); }

template <int D>
void launch_attention(dim3 grid, cudaStream_t st, const __half* q, const __half* k, const __half* v, const int* base,
                      const int* keys, int horizon, int heads, int splits, float scale, float* part_o, float2* part_ml) {
    attention_split_kernel<D><<<grid, kThreads, 0, st>>>(q, k, v, base, keys, horizon, heads, splits, scale, part_o, part_ml);
}

int round16(int n) { return (n + 15) / 16 * 16; }

}  // namespace

struct CudaExpertLoop::Impl {
    CudaExpertSpec spec;
    int64_t ld_h = 0, ld_o = 0, ld_f = 0;  // stored input widths of the layer products
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    void* workspace = nullptr;
    int tokens = 0;  // the activation buffers' capacity
    float *x = nullptr, *xt = nullptr, *qkv = nullptr, *gu = nullptr, *hf = nullptr;
    bf16 *hn = nullptr, *attn = nullptr, *g = nullptr;
    __half* q16 = nullptr;
    float* part_o = nullptr;  // attention splits: unnormalised outputs and (max, sum) per row
    float2* part_ml = nullptr;
    int64_t part_rows = 0;    // capacity in (observation, split, query row) triples
    struct Shape {
        cudaGraphExec_t exec = nullptr;
        int* ints = nullptr;  // pos[T], rows[T], base[B], keys[B]
    };
    std::map<std::vector<int64_t>, Shape> shapes;

    ~Impl() {
        drop_shapes();
        free_buffers();
        if (workspace) cudaFree(workspace);
        if (blas) cublasDestroy(blas);
        if (stream) cudaStreamDestroy(stream);
    }

    void drop_shapes() {
        for (auto& [key, shape] : shapes) {
            if (shape.exec) cudaGraphExecDestroy(shape.exec);
            if (shape.ints) cudaFree(shape.ints);
        }
        shapes.clear();
    }

    void free_buffers() {
        for (void* p : {static_cast<void*>(x), static_cast<void*>(xt), static_cast<void*>(qkv), static_cast<void*>(gu),
                        static_cast<void*>(hf), static_cast<void*>(hn), static_cast<void*>(attn), static_cast<void*>(g),
                        static_cast<void*>(q16), static_cast<void*>(part_o), static_cast<void*>(part_ml)}) {
            if (p) cudaFree(p);
        }
        x = xt = qkv = gu = hf = part_o = nullptr;
        hn = attn = g = nullptr;
        q16 = nullptr;
        part_ml = nullptr;
        tokens = 0;
        part_rows = 0;
    }

    template <typename T>
    void alloc(T*& p, int64_t elements) {
        check(cudaMalloc(reinterpret_cast<void**>(&p), elements * sizeof(T)), "allocating activations");
        check(cudaMemset(p, 0, elements * sizeof(T)), "clearing activations");  // pad columns stay zero
    }

    // Activations for T tokens and attention splits for `rows` (observation, split, query row)
    // triples; reallocated only when either falls short, and then the captured graphs, which point
    // at the old buffers, are dropped.
    void reserve(int T, int64_t rows) {
        if (T <= tokens && rows <= part_rows) return;
        T = std::max(T, tokens);
        rows = std::max(rows, part_rows);
        drop_shapes();
        free_buffers();
        const CudaExpertSpec& s = spec;
        alloc(x, int64_t{T} * s.hidden);
        alloc(xt, int64_t{T} * s.action_dim);
        alloc(qkv, int64_t{T} * (s.heads + 2) * s.head_dim);
        alloc(gu, int64_t{T} * 2 * s.ffn);
        alloc(hf, int64_t{T} * s.hidden);
        alloc(hn, T * ld_h);
        alloc(attn, T * ld_o);
        alloc(g, T * ld_f);
        alloc(q16, int64_t{T} * s.heads * s.head_dim);
        alloc(part_o, rows * s.head_dim);
        alloc(part_ml, rows);
        tokens = T;
        part_rows = rows;
    }

    // y[t] (+)= W x[t] for every token t: cuBLAS on BF16 inputs, float32 accumulation and output.
    void product(const CudaMatrix& W, const bf16* in, int T, float* y, float beta) const {
        const float alpha = 1.0f;
        check(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(W.rows), T, static_cast<int>(W.stride), &alpha,
                           W.data, CUDA_R_16BF, static_cast<int>(W.stride), in, CUDA_R_16BF, static_cast<int>(W.stride),
                           &beta, y, CUDA_R_32F, static_cast<int>(W.rows), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "layer product");
    }

    void launch_check(const char* what) const { check(cudaGetLastError(), what); }

    // Every kernel of the chunk, in stream order (captured once per shape).
    void enqueue(int B, const int* pos, const int* rows, const int* base, const int* keys, int splits) const {
        const CudaExpertSpec& s = spec;
        const int T = B * s.horizon, E = s.hidden, A = s.action_dim, d = s.head_dim;
        const float dt = -1.0f / static_cast<float>(s.steps), scale = 1.0f / std::sqrt(static_cast<float>(d));
        const float theta_scale = std::pow(s.rope_theta, -2.0f / static_cast<float>(d));
        const int rows_total = s.horizon * s.heads;
        const dim3 split_grid(blocks(rows_total, kRowsPerBlock), splits, B), combine_grid(rows_total, B);
        const int64_t step_mod = 3 * int64_t{E};
        for (int step = 0; step < s.steps; ++step) {
            action_in_kernel<<<T, kThreads, A * sizeof(float), stream>>>(xt, A, s.action_in, s.action_in_bias, x, E);
            for (const CudaExpertLayer& L : s.layers) {
                const float *m1 = L.attn_mod1 + step * step_mod, *m = L.attn_mod + step * step_mod;
                ada_norm_kernel<<<T, kThreads, 0, stream>>>(x, E, m1, m + E, s.eps, hn, ld_h);
                product(L.qkv, hn, T, qkv, 0.0f);
                rope_cache_kernel<<<T, kThreads, 0, stream>>>(qkv, s.heads, d, pos, rows, theta_scale, q16,
                                                              static_cast<__half*>(L.cache_k), static_cast<__half*>(L.cache_v));
                const __half *kc = static_cast<const __half*>(L.cache_k), *vc = static_cast<const __half*>(L.cache_v);
                switch (d) {
                    case 64: launch_attention<64>(split_grid, stream, q16, kc, vc, base, keys, s.horizon, s.heads, splits, scale, part_o, part_ml); break;
                    case 128: launch_attention<128>(split_grid, stream, q16, kc, vc, base, keys, s.horizon, s.heads, splits, scale, part_o, part_ml); break;
                    default: launch_attention<256>(split_grid, stream, q16, kc, vc, base, keys, s.horizon, s.heads, splits, scale, part_o, part_ml); break;
                }
                attention_combine_kernel<<<combine_grid, std::min(d, kThreads), 0, stream>>>(
                    part_o, part_ml, keys, s.horizon, s.heads, d, splits, scale, attn, ld_o);
                product(L.out_w[step], attn, T, x, 1.0f);  // the residual rides in the product
                const float *f1 = L.ffn_mod1 + step * step_mod, *f = L.ffn_mod + step * step_mod;
                ada_norm_kernel<<<T, kThreads, 0, stream>>>(x, E, f1, f + E, s.eps, hn, ld_h);
                product(L.gate_up, hn, T, gu, 0.0f);
                geglu_kernel<<<blocks(int64_t{T} * s.ffn, kThreads), kThreads, 0, stream>>>(gu, s.ffn, int64_t{T} * s.ffn, g, ld_f);
                product(L.down_w[step], g, T, x, 1.0f);
            }
            const float *o1 = s.out_mod1 + step * step_mod, *o = s.out_mod + step * step_mod;
            ada_norm_kernel<<<T, kThreads, 0, stream>>>(x, E, o1, o + E, s.eps, hf, int64_t{E});
            action_out_kernel<<<blocks(int64_t{T} * A * 32, kThreads), kThreads, 0, stream>>>(
                hf, E, s.action_out, s.action_out_bias, dt, xt, A, T);
        }
        launch_check("launching the expert kernels");
    }
};

CudaExpertLoop::CudaExpertLoop(CudaExpertSpec spec) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    const CudaExpertSpec& s = spec;
    auto fail = [](const std::string& why) { throw std::runtime_error("CUDA expert loop: " + why); };
    int major = 0;
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, s.device), "device attributes");
    if (major < 8) fail("needs compute capability 8.0 or newer (BF16 tensor cores)");
    if (s.head_dim != 64 && s.head_dim != 128 && s.head_dim != 256) fail("head_dim must be 64, 128 or 256");
    if (s.layers.empty() || s.steps < 1 || s.horizon < 1) fail("no layers, steps or horizon");
    if (s.out_mod == nullptr || s.out_mod1 == nullptr || s.action_in_bias == nullptr || s.action_out_bias == nullptr) {
        fail("missing the final norm's modulation or an action projection's bias");
    }
    if (!s.action_in.data || !s.action_out.data || s.action_in.cols != s.action_dim || s.action_in.rows != s.hidden ||
        s.action_out.rows != s.action_dim || s.action_out.cols != s.hidden || s.action_in.stride < s.action_dim ||
        s.action_out.stride < s.hidden) {
        fail("action projections do not match action_dim x hidden");
    }
    const CudaExpertLayer& first = s.layers.front();
    if (first.out_w.empty() || first.down_w.empty()) fail("layer 0 has no per-step output / down projections");
    if (first.qkv.stride < s.hidden || first.out_w.front().stride < int64_t{s.heads} * s.head_dim ||
        first.down_w.front().stride < s.ffn) {
        fail("layer 0's matrices are narrower than their inputs");
    }
    m.ld_h = first.qkv.stride;
    m.ld_o = first.out_w.front().stride;
    m.ld_f = first.down_w.front().stride;
    for (size_t i = 0; i < s.layers.size(); ++i) {
        const CudaExpertLayer& L = s.layers[i];
        const std::string at = "layer " + std::to_string(i) + ": ";
        auto bf16_matrix = [&](const CudaMatrix& w, int64_t rows, int64_t cols, int64_t stride, const char* what) {
            if (!w.data || w.type != CudaElem::bf16 || w.rows != rows || w.cols != cols || w.stride != stride) {
                auto shape = [](int64_t r, int64_t c, int64_t st) {
                    return std::to_string(r) + " x " + std::to_string(c) + " stored " + std::to_string(st) + " wide";
                };
                const char* type = w.type == CudaElem::f32 ? "F32" : w.type == CudaElem::f16 ? "F16" : "BF16";
                fail(at + what + " is " + type + " " + shape(w.rows, w.cols, w.stride) + "; it must be a BF16 " +
                     shape(rows, cols, stride) + " matrix");
            }
        };
        bf16_matrix(L.qkv, int64_t{s.heads + 2} * s.head_dim, s.hidden, m.ld_h, "fused q/k/v");
        bf16_matrix(L.gate_up, 2 * int64_t{s.ffn}, s.hidden, m.ld_h, "fused gate/up");
        if (L.out_w.size() != static_cast<size_t>(s.steps) || L.down_w.size() != static_cast<size_t>(s.steps)) {
            fail(at + "needs an output and a down projection per flow step (gates folded)");
        }
        for (int step = 0; step < s.steps; ++step) {
            bf16_matrix(L.out_w[step], s.hidden, int64_t{s.heads} * s.head_dim, m.ld_o, "output projection");
            bf16_matrix(L.down_w[step], s.hidden, s.ffn, m.ld_f, "down projection");
        }
        if (!L.attn_mod || !L.attn_mod1 || !L.ffn_mod || !L.ffn_mod1 || !L.cache_k || !L.cache_v) {
            fail(at + "missing a modulation or its K/V cache");
        }
    }
    m.spec = std::move(spec);
    check(cudaSetDevice(m.spec.device), "selecting the device");
    check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "creating a stream");
    check(cublasCreate(&m.blas), "creating a cuBLAS handle");
    check(cublasSetStream(m.blas, m.stream), "cuBLAS stream");
    constexpr size_t kWorkspace = size_t{32} << 20;  // cuBLAS must not allocate while a graph is captured
    check(cudaMalloc(&m.workspace, kWorkspace), "allocating cuBLAS workspace");
    check(cublasSetWorkspace(m.blas, m.workspace, kWorkspace), "cuBLAS workspace");
}

CudaExpertLoop::~CudaExpertLoop() = default;

size_t CudaExpertLoop::captured_graphs() const { return impl_->shapes.size(); }

void CudaExpertLoop::run(const std::vector<int>& n_prefix, const std::vector<int64_t>& bases, float* x) {
    Impl& m = *impl_;
    const CudaExpertSpec& s = m.spec;
    const int B = static_cast<int>(n_prefix.size()), H = s.horizon, T = B * H;
    if (B == 0 || bases.size() != n_prefix.size()) throw std::invalid_argument("CUDA expert loop: one base per observation");
    check(cudaSetDevice(s.device), "selecting the device");
    int splits = 0;
    for (int b = 0; b < B; ++b) {
        const int keys = n_prefix[b] + H;
        if (bases[b] + round16(keys) > s.cache_rows) throw std::invalid_argument("CUDA expert loop: K/V range past the cache");
        splits = std::max(splits, (keys + kSplitKeys - 1) / kSplitKeys);
    }
    m.reserve(T, int64_t{B} * splits * H * s.heads);
    std::vector<int64_t> key(n_prefix.begin(), n_prefix.end());
    key.insert(key.end(), bases.begin(), bases.end());
    auto it = m.shapes.find(key);
    if (it == m.shapes.end()) {
        std::vector<int> ints;  // pos[T], rows[T], base[B], keys[B]
        for (int b = 0; b < B; ++b)
            for (int j = 0; j < H; ++j) ints.push_back(n_prefix[b] + j);
        for (int b = 0; b < B; ++b)
            for (int j = 0; j < H; ++j) ints.push_back(static_cast<int>(bases[b] + n_prefix[b] + j));
        for (int b = 0; b < B; ++b) ints.push_back(static_cast<int>(bases[b]));
        for (int b = 0; b < B; ++b) ints.push_back(n_prefix[b] + H);
        Impl::Shape shape;
        check(cudaMalloc(reinterpret_cast<void**>(&shape.ints), ints.size() * sizeof(int)), "allocating shape indices");
        try {
            check(cudaMemcpy(shape.ints, ints.data(), ints.size() * sizeof(int), cudaMemcpyHostToDevice), "uploading shape indices");
            cudaGraph_t graph = nullptr;
            check(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "beginning graph capture");
            try {
                const int* p = shape.ints;
                m.enqueue(B, p, p + T, p + 2 * T, p + 2 * T + B, splits);
            } catch (...) {
                cudaStreamEndCapture(m.stream, &graph);
                if (graph) cudaGraphDestroy(graph);
                throw;
            }
            check(cudaStreamEndCapture(m.stream, &graph), "ending graph capture");
            const cudaError_t made = cudaGraphInstantiate(&shape.exec, graph, 0);
            cudaGraphDestroy(graph);
            check(made, "instantiating the expert graph");
        } catch (...) {
            cudaFree(shape.ints);
            throw;
        }
        it = m.shapes.emplace(std::move(key), shape).first;
    }
    const size_t bytes = static_cast<size_t>(T) * s.action_dim * sizeof(float);
    check(cudaMemcpyAsync(m.xt, x, bytes, cudaMemcpyHostToDevice, m.stream), "uploading the noise");
    check(cudaGraphLaunch(it->second.exec, m.stream), "launching the expert graph");
    check(cudaMemcpyAsync(x, m.xt, bytes, cudaMemcpyDeviceToHost, m.stream), "downloading the actions");
    check(cudaStreamSynchronize(m.stream), "running the expert loop");
}

}  // namespace vla_edge
