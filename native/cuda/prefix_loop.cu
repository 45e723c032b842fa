// The prefix pass in our own CUDA code (native/src/cuda_prefix_loop.h says why). Same arithmetic as
// the ggml prefix graph of pi05_graph.cpp (build_prefix): products on BF16 inputs with float32
// accumulation and outputs, float32 norms, RoPE and GeGLU, F16 K/V cache and F16 attention inputs
// with float32 scores and sums.
#include "cuda_prefix_loop.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "expert_kernels.cuh"
#include "loop_common.cuh"

namespace vla_edge {

namespace {

using namespace expert_kernels;

constexpr const char* kWho = "CUDA prefix loop";
void check(cudaError_t e, const char* what) { loop_check(e, kWho, what); }

}  // namespace

struct CudaPrefixLoop::Impl {
    CudaPrefixSpec spec;
    int64_t ld_h = 0, ld_o = 0, ld_f = 0;  // stored input widths of the products
    std::unique_ptr<LoopStream> io;        // made once the device is selected
    float* zero = nullptr;                 // the norms' shift: Gemma's norm has none
    int tokens = 0;                        // the activation buffers' capacity
    int64_t part_rows = 0;                 // attention partials' capacity (one observation at a time)
    float *x = nullptr, *qkv = nullptr, *gu = nullptr, *part_o = nullptr;
    bf16 *hn = nullptr, *attn = nullptr, *g = nullptr;
    __half* q16 = nullptr;
    float2* part_ml = nullptr;
    CapturedShapes shapes{kWho};  // ints: pos[T], rows[T], base[B], keys[B]

    ~Impl() {
        shapes.clear();
        release_activations();
        if (zero) cudaFree(zero);
    }

    void release_activations() {
        for (void* p : {static_cast<void*>(x), static_cast<void*>(qkv), static_cast<void*>(gu), static_cast<void*>(part_o),
                        static_cast<void*>(hn), static_cast<void*>(attn), static_cast<void*>(g), static_cast<void*>(q16),
                        static_cast<void*>(part_ml)}) {
            if (p) cudaFree(p);
        }
        x = qkv = gu = part_o = nullptr;
        hn = attn = g = nullptr;
        q16 = nullptr;
        part_ml = nullptr;
        tokens = 0;
        part_rows = 0;
    }

    // Buffers for T prefix tokens and one observation's attention partials (`rows` query rows x
    // splits); grown only when either falls short, dropping the graphs that point at the old ones.
    void grow(int T, int64_t rows) {
        if (T <= tokens && rows <= part_rows) return;
        T = std::max(T, tokens);
        rows = std::max(rows, part_rows);
        shapes.clear();
        release_activations();
        const CudaPrefixSpec& s = spec;
        loop_alloc(x, int64_t{T} * s.hidden, kWho);
        loop_alloc(qkv, int64_t{T} * (s.heads + 2) * s.head_dim, kWho);
        loop_alloc(gu, int64_t{T} * 2 * s.ffn, kWho);
        loop_alloc(hn, T * ld_h, kWho);
        loop_alloc(attn, T * ld_o, kWho);
        loop_alloc(g, T * ld_f, kWho);
        loop_alloc(q16, int64_t{T} * s.heads * s.head_dim, kWho);
        loop_alloc(part_o, rows * s.head_dim, kWho);
        loop_alloc(part_ml, rows, kWho);
        tokens = T;
        part_rows = rows;
    }

    // Every launch of the prefix pass, in stream order (captured once per shape). Attention runs
    // once per observation: each has its own number of query rows (its length x heads).
    void enqueue(const std::vector<int>& n_prefix, const int* pos, const int* rows, const int* base, const int* keys) const {
        const CudaPrefixSpec& s = spec;
        const cudaStream_t st = io->stream;
        const int T = std::accumulate(n_prefix.begin(), n_prefix.end(), 0), E = s.hidden, d = s.head_dim;
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        const float theta_scale = std::pow(s.rope_theta, -2.0f / static_cast<float>(d));
        for (size_t i = 0; i < s.layers.size(); ++i) {
            const CudaPrefixLayer& L = s.layers[i];
            __half *kc = static_cast<__half*>(L.cache_k), *vc = static_cast<__half*>(L.cache_v);
            ada_norm_kernel<<<T, kThreads, 0, st>>>(x, E, L.attn_norm1, zero, s.eps, hn, ld_h);
            io->product(L.qkv, hn, T, qkv, 0.0f);
            launch_rope_cache(st, T, qkv, s.heads, d, pos, rows, theta_scale, q16, kc, vc);
            if (i + 1 == s.layers.size()) break;  // only K/V are read downstream
            int first = 0;
            for (size_t b = 0; b < n_prefix.size(); ++b) {
                const int len = n_prefix[b], rows_b = len * s.heads, splits = (len + kSplitKeys - 1) / kSplitKeys;
                launch_attention(d, AttentionForm::split, 1, rows_b, rows_b, splits, st, q16 + int64_t{first} * s.heads * d,
                                 kc, vc, base + b, keys + b, len, s.heads, scale, part_o, part_ml);
                launch_attention_merge(false, st, 1, len, s.heads, d, part_o, part_ml, keys + b, kSplitKeys, rows_b, splits,
                                       scale, attn + int64_t{first} * ld_o, ld_o);
                first += len;
            }
            io->product(L.out, attn, T, x, 1.0f);  // the residual rides in the product
            ada_norm_kernel<<<T, kThreads, 0, st>>>(x, E, L.ffn_norm1, zero, s.eps, hn, ld_h);
            io->product(L.gate_up, hn, T, gu, 0.0f);
            geglu_kernel<<<blocks(int64_t{T} * s.ffn, kThreads), kThreads, 0, st>>>(gu, s.ffn, int64_t{T} * s.ffn, g, ld_f);
            io->product(L.down, g, T, x, 1.0f);
        }
        check(cudaGetLastError(), "launching the prefix kernels");
    }
};

CudaPrefixLoop::CudaPrefixLoop(CudaPrefixSpec spec) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    const CudaPrefixSpec& s = spec;
    auto fail = [](const std::string& why) { throw std::runtime_error(std::string(kWho) + ": " + why); };
    int major = 0;
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, s.device), "device attributes");
    if (major < 8) fail("needs compute capability 8.0 or newer (BF16 tensor cores)");
    if (s.head_dim != 64 && s.head_dim != 128 && s.head_dim != 256) fail("head_dim must be 64, 128 or 256");
    if (s.layers.empty()) fail("no layers");
    const CudaPrefixLayer& first = s.layers.front();
    if (first.qkv.stride < s.hidden || first.out.stride < int64_t{s.heads} * s.head_dim || first.down.stride < s.ffn) {
        fail("layer 0's matrices are narrower than their inputs");
    }
    m.ld_h = first.qkv.stride;
    m.ld_o = first.out.stride;
    m.ld_f = first.down.stride;
    for (size_t i = 0; i < s.layers.size(); ++i) {
        const CudaPrefixLayer& L = s.layers[i];
        const bool last = i + 1 == s.layers.size();
        const std::string at = "layer " + std::to_string(i) + ": ";
        auto bf16_matrix = [&](const CudaMatrix& w, int64_t rows, int64_t cols, int64_t stride, const char* what) {
            if (!w.data || w.type != CudaElem::bf16 || w.rows != rows || w.cols != cols || w.stride != stride) {
                const char* type = w.type == CudaElem::f32 ? "F32" : w.type == CudaElem::f16 ? "F16" : "BF16";
                fail(at + what + " is " + type + " " + std::to_string(w.rows) + " x " + std::to_string(w.cols) +
                     " stored " + std::to_string(w.stride) + " wide; it must be a BF16 " + std::to_string(rows) + " x " +
                     std::to_string(cols) + " stored " + std::to_string(stride) + " wide matrix");
            }
        };
        bf16_matrix(L.qkv, int64_t{s.heads + 2} * s.head_dim, s.hidden, m.ld_h, "fused q/k/v");
        if (!L.attn_norm1 || !L.cache_k || !L.cache_v) fail(at + "missing its attention norm's 1 + w or its K/V cache");
        if (last) continue;  // the rest of the last layer is never run
        bf16_matrix(L.out, s.hidden, int64_t{s.heads} * s.head_dim, m.ld_o, "output projection");
        bf16_matrix(L.gate_up, 2 * int64_t{s.ffn}, s.hidden, m.ld_h, "fused gate/up");
        bf16_matrix(L.down, s.hidden, s.ffn, m.ld_f, "down projection");
        if (!L.ffn_norm1) fail(at + "missing its feed-forward norm's 1 + w");
    }
    m.spec = std::move(spec);
    check(cudaSetDevice(m.spec.device), "selecting the device");
    m.io = std::make_unique<LoopStream>(kWho);
    loop_alloc(m.zero, m.spec.hidden, kWho);
}

CudaPrefixLoop::~CudaPrefixLoop() = default;

size_t CudaPrefixLoop::captured_graphs() const { return impl_->shapes.size(); }

void CudaPrefixLoop::run(const float* emb, const std::vector<int>& n_prefix, const std::vector<int64_t>& bases) {
    Impl& m = *impl_;
    const CudaPrefixSpec& s = m.spec;
    const int B = static_cast<int>(n_prefix.size());
    if (B == 0 || bases.size() != n_prefix.size()) throw std::invalid_argument("CUDA prefix loop: one base per observation");
    check(cudaSetDevice(s.device), "selecting the device");
    int T = 0, longest = 0;
    for (int b = 0; b < B; ++b) {
        if (n_prefix[b] < 1) throw std::invalid_argument("CUDA prefix loop: an empty prefix");
        // the attention kernel reads each key range up to its next multiple of 16 (finite: zeroed or written)
        if (bases[b] + (n_prefix[b] + 15) / 16 * 16 > s.cache_rows) throw std::invalid_argument("CUDA prefix loop: K/V range past the cache");
        T += n_prefix[b];
        longest = std::max(longest, n_prefix[b]);
    }
    m.grow(T, int64_t{longest} * s.heads * ((longest + kSplitKeys - 1) / kSplitKeys));
    std::vector<int64_t> key(n_prefix.begin(), n_prefix.end());
    key.insert(key.end(), bases.begin(), bases.end());
    std::vector<int> ints;  // pos[T], rows[T], base[B], keys[B]
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < n_prefix[b]; ++j) ints.push_back(j);
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < n_prefix[b]; ++j) ints.push_back(static_cast<int>(bases[b] + j));
    for (int b = 0; b < B; ++b) ints.push_back(static_cast<int>(bases[b]));
    for (int b = 0; b < B; ++b) ints.push_back(n_prefix[b]);
    const cudaGraphExec_t exec =
        m.shapes.get(key, ints, *m.io, [&](const int* p) { m.enqueue(n_prefix, p, p + T, p + 2 * T, p + 2 * T + B); });
    const cudaStream_t st = m.io->stream;
    check(cudaMemcpyAsync(m.x, emb, static_cast<size_t>(T) * s.hidden * sizeof(float), cudaMemcpyHostToDevice, st),
          "uploading the embeddings");
    check(cudaGraphLaunch(exec, st), "launching the prefix graph");
    check(cudaStreamSynchronize(st), "running the prefix loop");
}

}  // namespace vla_edge
