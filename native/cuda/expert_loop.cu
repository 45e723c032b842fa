// The action expert's flow steps in our own CUDA code (native/src/cuda_expert_loop.h says why).
// Same arithmetic as the ggml graph of pi05_graph.cpp (build_expert_step + the chunk's Euler
// update): products on BF16 inputs with float32 accumulation and float32 outputs, float32 norms,
// RoPE and GeGLU, F16 K/V cache and F16 attention inputs with float32 scores and sums.
#include "cuda_expert_loop.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>

#include "expert_kernels.cuh"
#include "loop_common.cuh"
#include "tuned_products.h"

namespace vla_edge {

namespace {

using namespace expert_kernels;

constexpr const char* kWho = "CUDA expert loop";
void check(cudaError_t e, const char* what) { loop_check(e, kWho, what); }

AttentionForm attention_form_from_env() {
    const char* v = std::getenv("VLA_EDGE_CUDA_ATTENTION");
    if (v && !std::strcmp(v, "tile64")) return AttentionForm::tile64;
    if (v && !std::strcmp(v, "tile32")) return AttentionForm::tile32;
    return AttentionForm::split;
}

template <int D, int Keys>
void allow_tile_smem() {
    check(cudaFuncSetAttribute(attention_tile_kernel<D, Keys>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(TileLayout<D, Keys>::bytes)),
          "attention shared memory");
}

int round16(int n) { return (n + 15) / 16 * 16; }

}  // namespace

struct CudaExpertLoop::Impl {
    CudaExpertSpec spec;
    AttentionForm attention = AttentionForm::split;
    int64_t ld_h = 0, ld_o = 0, ld_f = 0;  // stored input widths of the layer products
    std::unique_ptr<LoopStream> io;  // made once the device is selected
    cudaStream_t stream = nullptr;   // io's
    std::unique_ptr<TunedProducts> products;  // nullptr: cuBLAS's default (unless VLA_EDGE_CUDA_TUNED_PRODUCTS=1)
    int tokens = 0;  // the activation buffers' capacity
    float *x = nullptr, *xt = nullptr, *qkv = nullptr, *gu = nullptr, *hf = nullptr;
    bf16 *hn = nullptr, *attn = nullptr, *g = nullptr;
    __half* q16 = nullptr;
    float* part_o = nullptr;  // attention splits: unnormalised outputs and (max, sum) per row
    float2* part_ml = nullptr;
    int64_t part_rows = 0;    // capacity in (observation, split, query row) triples
    CapturedShapes shapes{kWho};  // ints: pos[T], rows[T], base[B], keys[B]

    ~Impl() {
        shapes.clear();
        free_buffers();
        products.reset();
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
        loop_alloc(p, elements, kWho);
    }

    // Activations for T tokens and attention splits for `rows` (observation, split, query row)
    // triples; reallocated only when either falls short, and then the captured graphs, which point
    // at the old buffers, are dropped.
    void reserve(int T, int64_t rows) {
        if (T <= tokens && rows <= part_rows) return;
        T = std::max(T, tokens);
        rows = std::max(rows, part_rows);
        shapes.clear();
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

    // y[t] (+)= W x[t] for every token t: BF16 inputs, float32 accumulation and output.
    void product(const CudaMatrix& W, const bf16* in, int T, float* y, float beta) const {
        if (products) {
            products->run(W.data, static_cast<int>(W.rows), static_cast<int>(W.stride), in, T, y, beta != 0.0f);
        } else {
            io->product(W, in, T, y, beta);
        }
    }

    // Times the four layer products' algorithms at T tokens on layer 0's matrices (once per T,
    // before its graph is captured). Overwrites the activations, which every step recomputes.
    void tune_products(int T) {
        if (!products) return;
        const CudaExpertLayer& L = spec.layers.front();
        auto tune = [&](const CudaMatrix& W, const bf16* in, float* y, bool acc) {
            products->tune(W.data, static_cast<int>(W.rows), static_cast<int>(W.stride), in, T, y, acc);
        };
        tune(L.qkv, hn, qkv, false);
        tune(L.out_w.front(), attn, x, true);
        tune(L.gate_up, hn, gu, false);
        tune(L.down_w.front(), g, x, true);
    }

    void launch_check(const char* what) const { check(cudaGetLastError(), what); }

    // Rows per (observation, split) in the attention partials: the tile kernels write whole 16-row tiles.
    int attention_rows_ld() const {
        const int rows = spec.horizon * spec.heads;
        return attention == AttentionForm::split ? rows : round16(rows);
    }

    // Every kernel of the chunk, in stream order (captured once per shape).
    void enqueue(int B, const int* pos, const int* rows, const int* base, const int* keys, int splits) const {
        const CudaExpertSpec& s = spec;
        const int T = B * s.horizon, E = s.hidden, A = s.action_dim, d = s.head_dim;
        const float dt = -1.0f / static_cast<float>(s.steps), scale = 1.0f / std::sqrt(static_cast<float>(d));
        const float theta_scale = std::pow(s.rope_theta, -2.0f / static_cast<float>(d));
        const int rows_total = s.horizon * s.heads, rows_ld = attention_rows_ld();
        const int64_t step_mod = 3 * int64_t{E};
        for (int step = 0; step < s.steps; ++step) {
            action_in_kernel<<<T, kThreads, A * sizeof(float), stream>>>(xt, A, s.action_in, s.action_in_bias, x, E);
            for (const CudaExpertLayer& L : s.layers) {
                const float *m1 = L.attn_mod1 + step * step_mod, *m = L.attn_mod + step * step_mod;
                ada_norm_kernel<<<T, kThreads, 0, stream>>>(x, E, m1, m + E, s.eps, hn, ld_h);
                product(L.qkv, hn, T, qkv, 0.0f);
                launch_rope_cache(stream, T, qkv, s.heads, d, pos, rows, theta_scale, q16, static_cast<__half*>(L.cache_k),
                                  static_cast<__half*>(L.cache_v));
                const __half *kc = static_cast<const __half*>(L.cache_k), *vc = static_cast<const __half*>(L.cache_v);
                launch_attention(d, attention, B, rows_total, rows_ld, splits, stream, q16, kc, vc, base, keys, s.horizon,
                                 s.heads, scale, part_o, part_ml);
                launch_attention_merge(attention != AttentionForm::split, stream, B, s.horizon, s.heads, d, part_o, part_ml,
                                       keys, keys_per_split(attention), rows_ld, splits, scale, attn, ld_o);
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
    m.attention = attention_form_from_env();
    if (m.attention != AttentionForm::split) {
        const int d = m.spec.head_dim;
        const bool wide = m.attention == AttentionForm::tile64;
        const size_t need = d == 64    ? (wide ? TileLayout<64, 64>::bytes : TileLayout<64, 32>::bytes)
                            : d == 128 ? (wide ? TileLayout<128, 64>::bytes : TileLayout<128, 32>::bytes)
                                       : (wide ? TileLayout<256, 64>::bytes : TileLayout<256, 32>::bytes);
        int optin = 0;
        check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, m.spec.device), "device attributes");
        if (static_cast<size_t>(optin) < need) {
            fail("attention needs " + std::to_string(need) + " bytes of shared memory per block; the device allows " +
                 std::to_string(optin));
        }
        auto* allow = d == 64    ? (wide ? allow_tile_smem<64, 64> : allow_tile_smem<64, 32>)
                      : d == 128 ? (wide ? allow_tile_smem<128, 64> : allow_tile_smem<128, 32>)
                                 : (wide ? allow_tile_smem<256, 64> : allow_tile_smem<256, 32>);
        allow();  // only the instantiation this loop launches
    }
    m.io = std::make_unique<LoopStream>(kWho);
    m.stream = m.io->stream;
    // opt-in (VLA_EDGE_CUDA_TUNED_PRODUCTS=1) until the loop has run with it on a GPU (docs/gpu.md)
    const char* tuned = std::getenv("VLA_EDGE_CUDA_TUNED_PRODUCTS");
    if (tuned && !std::strcmp(tuned, "1")) {
        m.products = std::make_unique<TunedProducts>(m.io->blas, m.stream, m.io->workspace, LoopStream::kWorkspace);
    }
}

CudaExpertLoop::~CudaExpertLoop() = default;

size_t CudaExpertLoop::captured_graphs() const { return impl_->shapes.size(); }

std::string CudaExpertLoop::describe() const {
    const Impl& m = *impl_;
    const char* form = m.attention == AttentionForm::split ? "split128" : m.attention == AttentionForm::tile32 ? "tile32" : "tile64";
    return std::string("attention ") + form + "; " +
           (m.products ? m.products->describe() : std::string("cuBLAS default products"));
}

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
        splits = std::max(splits, (keys + keys_per_split(m.attention) - 1) / keys_per_split(m.attention));
    }
    m.reserve(T, int64_t{B} * splits * m.attention_rows_ld());
    std::vector<int64_t> key(n_prefix.begin(), n_prefix.end());
    key.insert(key.end(), bases.begin(), bases.end());
    if (!m.shapes.has(key)) m.tune_products(T);  // before its graph is captured
    std::vector<int> ints;  // pos[T], rows[T], base[B], keys[B]
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) ints.push_back(n_prefix[b] + j);
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) ints.push_back(static_cast<int>(bases[b] + n_prefix[b] + j));
    for (int b = 0; b < B; ++b) ints.push_back(static_cast<int>(bases[b]));
    for (int b = 0; b < B; ++b) ints.push_back(n_prefix[b] + H);
    const cudaGraphExec_t exec =
        m.shapes.get(key, ints, *m.io, [&](const int* p) { m.enqueue(B, p, p + T, p + 2 * T, p + 2 * T + B, splits); });
    const size_t bytes = static_cast<size_t>(T) * s.action_dim * sizeof(float);
    check(cudaMemcpyAsync(m.xt, x, bytes, cudaMemcpyHostToDevice, m.stream), "uploading the noise");
    check(cudaGraphLaunch(exec, m.stream), "launching the expert graph");
    check(cudaMemcpyAsync(x, m.xt, bytes, cudaMemcpyDeviceToHost, m.stream), "downloading the actions");
    check(cudaStreamSynchronize(m.stream), "running the expert loop");
}

}  // namespace vla_edge
