// The prefix pass in our own CUDA code (native/src/cuda_prefix_loop.h says why). Same arithmetic as
// the ggml prefix graph of pi05_graph.cpp (build_prefix): products on BF16 inputs with float32
// accumulation and outputs, float32 norms, RoPE and GeGLU, F16 K/V cache and F16 attention inputs
// with float32 scores and sums.
#include "cuda_prefix_loop.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <string>

#include "expert_kernels.cuh"
#include "loop_common.cuh"
#include "tuned_products.h"

namespace vla_edge {

namespace {

using namespace expert_kernels;

constexpr const char* kWho = "CUDA prefix loop";
void check(cudaError_t e, const char* what) { loop_check(e, kWho, what); }

}  // namespace

struct CudaPrefixLoop::Impl {
    CudaPrefixSpec spec;
    AttentionForm attention = AttentionForm::flash;     // prepare_attention (preferred: flash)
    int merge_warps = 1;                                // merge_warps_for(attention, 1)
    bool vector_norms = true;                           // vector_norms_wanted()
    bool pdl = false;                                   // programmatic dependent launches (pdl_wanted)
    FlashSizing flash;                                  // the flash form's plan (flash_sizing)
    std::unique_ptr<LoopStream> io;        // made once the device is selected
    // the algorithm raced per shape (TunedProducts, as the expert loop's; VLA_EDGE_CUDA_PREFIX_TUNED=0:
    // cuBLAS's default products)
    std::unique_ptr<TunedProducts> products;
    LoopBuffers fixed{kWho};               // for the loop's lifetime
    float* zero = nullptr;                 // (fixed) the norms' shift: Gemma's norm has none
    LayerActivations act{kWho};            // attention partials for one observation at a time
    bf16* gu16 = nullptr;                  // (with act's buffers) the gate/up product in BF16: the prefix's
                                           // largest output (tokens x 2 ffn), half the bytes of act.gu's floats
    float* tune_y = nullptr;               // (with act's buffers, tuned products only) the race's residual-sized output
    // ints: pos[T], rows[T], base[B], keys[B]. Declared last, so destroyed first: before the
    // buffers and stream its graphs use.
    CapturedShapes shapes{kWho};

    // Room for a batch of these prefix lengths (the captured graphs go where the buffers grow);
    // returns its token count.
    int prepare(const std::vector<int>& n_prefix) {
        int T = 0;
        // The flash form gives a shorter prefix more splits of fewer rows, but never more than two
        // 64-row blocks per SM of them (flash_plan): room for that from the start, so that a robot's
        // next, shorter prompt does not grow the buffers and drop the captured graphs.
        int64_t part_rows = attention == AttentionForm::flash && flash.forced == 0 ? int64_t{2} * kFlashRows * flash.sms : 0;
        for (int n : n_prefix) {
            if (n < 1) throw std::invalid_argument("CUDA prefix loop: an empty prefix");
            T += n;
            const int rows = n * spec.heads;
            part_rows = std::max(part_rows, int64_t{attention_rows_ld(attention, rows)} * plan_for(rows, n).splits);
        }
        const bool remade =
            act.reserve(spec, T, part_rows, [&](LoopBuffers& b, int n) {
                b.alloc(gu16, int64_t{n} * 2 * spec.ffn);
                if (products->races()) b.alloc(tune_y, int64_t{n} * spec.hidden);
            });
        if (remade) shapes.clear();
        return T;
    }

    // The attention's key splits for one observation of `rows` query rows over `keys` keys.
    SplitPlan plan_for(int rows, int keys) const { return split_plan(attention, rows, 1, keys, flash); }

    // Races the four layer products' algorithms at T tokens over every layer's matrices
    // (TunedProducts::tune; once per token count, before its graph is captured). The two that add
    // into the residual are timed into tune_y instead: the residual x already holds the prefix this
    // call runs (input_rows).
    void tune_products(int T) {
        std::vector<CudaMatrix> qkv, out, gate_up, down;  // the last layer runs its q/k/v only
        for (size_t i = 0; i < spec.layers.size(); ++i) {
            const CudaPrefixLayer& L = spec.layers[i];
            qkv.push_back(L.qkv);
            if (i + 1 == spec.layers.size()) break;
            out.push_back(L.out);
            gate_up.push_back(L.gate_up);
            down.push_back(L.down);
        }
        products->tune(qkv, act.hn, T, act.qkv, false);
        if (out.empty()) return;
        products->tune(out, act.attn, T, tune_y, true);
        products->tune(gate_up, act.hn, T, gu16);
        products->tune(down, act.g, T, tune_y, true);
    }

    // Every launch of the prefix pass, in stream order (captured once per shape). Attention runs
    // once per observation: each has its own number of query rows (its length x heads).
    void enqueue(const std::vector<int>& n_prefix, const int* pos, const int* rows, const int* base, const int* keys) const {
        const CudaPrefixSpec& s = spec;
        const cudaStream_t st = io->stream;
        const int T = std::accumulate(n_prefix.begin(), n_prefix.end(), 0), E = s.hidden, d = s.head_dim;
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));
        const float theta_scale = std::pow(s.rope_theta, -2.0f / static_cast<float>(d));
        const PdlScope pdl_scope(pdl);
        for (size_t i = 0; i < s.layers.size(); ++i) {
            const CudaPrefixLayer& L = s.layers[i];
            __half *kc = static_cast<__half*>(L.cache_k), *vc = static_cast<__half*>(L.cache_v);
            launch_kernel(ada_norm_kernel<bf16>, T, kThreads, 0, st, act.x, E, L.attn_norm1, zero, s.eps, act.hn, act.ld_h,
                          vector_norms);
            products->run(L.qkv, act.hn, T, act.qkv, false);
            launch_rope_cache(st, T, act.qkv, s.heads, d, pos, rows, theta_scale, act.q16, kc, vc);
            if (i + 1 == s.layers.size()) break;  // only K/V are read downstream
            int first = 0;
            for (size_t b = 0; b < n_prefix.size(); ++b) {
                const int len = n_prefix[b], rows_b = len * s.heads;
                const __half* q = act.q16 + int64_t{first} * s.heads * d;
                bf16* out = act.attn + int64_t{first} * act.ld_o;
                launch_attention_form(attention, d, plan_for(rows_b, len), merge_warps, 1, rows_b,
                                      attention_rows_ld(attention, rows_b), st, q, kc, vc, base + b, keys + b, len, s.heads, scale,
                                      act.part_o, act.part_ml, out, act.ld_o);
                first += len;
            }
            products->run(L.out, act.attn, T, act.x, true);  // the residual rides in the product
            launch_kernel(ada_norm_kernel<bf16>, T, kThreads, 0, st, act.x, E, L.ffn_norm1, zero, s.eps, act.hn, act.ld_h,
                          vector_norms);
            products->run(L.gate_up, act.hn, T, gu16);
            launch_geglu(st, static_cast<const bf16*>(gu16), s.ffn, T, act.g, act.ld_f);
            products->run(L.down, act.g, T, act.x, true);
        }
        check(cudaGetLastError(), "launching the prefix kernels");
    }
};

CudaPrefixLoop::CudaPrefixLoop(CudaPrefixSpec spec) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    const CudaPrefixSpec& s = spec;
    auto fail = [](const std::string& why) { throw std::runtime_error(std::string(kWho) + ": " + why); };
    loop_require_device(kWho, s.device, s.head_dim);
    if (s.layers.empty()) fail("no layers");
    const CudaPrefixLayer& first = s.layers.front();
    m.act.set_widths(s, first.qkv, first.out, first.down);
    for (size_t i = 0; i < s.layers.size(); ++i) {
        const CudaPrefixLayer& L = s.layers[i];
        const bool last = i + 1 == s.layers.size();
        const std::string at = "layer " + std::to_string(i) + ": ";
        auto bf16_matrix = [&](const CudaMatrix& w, int64_t rows, int64_t cols, int64_t stride, const char* what) {
            loop_require_bf16(kWho, at + what, w, rows, cols, stride);
        };
        bf16_matrix(L.qkv, int64_t{s.heads + 2} * s.head_dim, s.hidden, m.act.ld_h, "fused q/k/v");
        if (!L.attn_norm1 || !L.cache_k || !L.cache_v) fail(at + "missing its attention norm's 1 + w or its K/V cache");
        if (last) continue;  // the rest of the last layer is never run
        bf16_matrix(L.out, s.hidden, int64_t{s.heads} * s.head_dim, m.act.ld_o, "output projection");
        bf16_matrix(L.gate_up, 2 * int64_t{s.ffn}, s.hidden, m.act.ld_h, "fused gate/up");
        bf16_matrix(L.down, s.hidden, s.ffn, m.act.ld_f, "down projection");
        if (!L.ffn_norm1) fail(at + "missing its feed-forward norm's 1 + w");
    }
    m.spec = std::move(spec);
    check(cudaSetDevice(m.spec.device), "selecting the device");
    m.act.float_gu = false;  // gu16 instead
    // the flash form by default since the seventh session of 2026-12-07 (H100, beside realtime-vla: the
    // prefix 5.2 -> 4.9 ms at 2 views, 7.5 -> 6.7 at 3; docs/gpu.md); VLA_EDGE_CUDA_PREFIX_ATTENTION=tile64w8 turns it back
    m.attention = prepare_attention(kWho, m.spec.device, m.spec.head_dim, "VLA_EDGE_CUDA_PREFIX_ATTENTION",
                                    AttentionForm::flash);
    m.flash = flash_sizing(kWho, m.spec.device);
    m.merge_warps = merge_warps_for(m.attention, 1);
    m.vector_norms = vector_norms_wanted();
    m.pdl = pdl_wanted(kWho, m.spec.device);
    m.io = std::make_unique<LoopStream>(kWho);
    // products raced per shape by default since the seventh session of 2026-12-07 (with the flash form: the
    // prefix 5.2 -> 4.6 ms at 2 views); VLA_EDGE_CUDA_PREFIX_TUNED=0: cuBLAS's default algorithms
    m.products = std::make_unique<TunedProducts>(*m.io, loop_switch("VLA_EDGE_CUDA_TUNE_COLD", true),
                                                 loop_switch("VLA_EDGE_CUDA_PREFIX_TUNED", true));
    m.fixed.alloc(m.zero, m.spec.hidden);
}

CudaPrefixLoop::~CudaPrefixLoop() = default;

size_t CudaPrefixLoop::captured_graphs() const { return impl_->shapes.size(); }

std::string CudaPrefixLoop::describe() const {
    const Impl& m = *impl_;
    return loop_forms_note(m.attention, m.merge_warps, m.products->describe(),
                           m.vector_norms, m.pdl);
}

float* CudaPrefixLoop::input_rows(const std::vector<int>& n_prefix) {
    Impl& m = *impl_;
    check(cudaSetDevice(m.spec.device), "selecting the device");
    m.prepare(n_prefix);
    return m.act.x;
}

void CudaPrefixLoop::run(const float* emb, const std::vector<int>& n_prefix, const std::vector<int64_t>& bases,
                         const std::vector<std::pair<int, int>>& uploads) {
    Impl& m = *impl_;
    const CudaPrefixSpec& s = m.spec;
    const int B = static_cast<int>(n_prefix.size());
    loop_require_ranges(kWho, bases, n_prefix, s.cache_rows);
    check(cudaSetDevice(s.device), "selecting the device");
    const int T = m.prepare(n_prefix);
    const std::vector<int64_t> key = CapturedShapes::key_of(n_prefix, bases);
    if (!m.shapes.has(key)) m.tune_products(T);  // before its graph is captured
    const std::vector<int> ints = token_indices(std::vector<int>(B, 0), n_prefix, bases);  // positions from 0
    const cudaGraphExec_t exec =
        m.shapes.get(key, ints, *m.io, [&](const int* p) { m.enqueue(n_prefix, p, p + T, p + 2 * T, p + 2 * T + B); });
    const cudaStream_t st = m.io->stream;
    const std::vector<std::pair<int, int>> all{{0, T}};
    for (const auto& [first, count] : uploads.empty() ? all : uploads) {
        if (first < 0 || count < 0 || first + count > T) throw std::invalid_argument("CUDA prefix loop: an upload past the prefix");
        const size_t offset = static_cast<size_t>(first) * s.hidden;
        check(cudaMemcpyAsync(m.act.x + offset, emb + offset, static_cast<size_t>(count) * s.hidden * sizeof(float),
                              cudaMemcpyHostToDevice, st),
              "uploading the embeddings");
    }
    check(cudaGraphLaunch(exec, st), "launching the prefix graph");
    check(cudaStreamSynchronize(st), "running the prefix loop");
}

}  // namespace vla_edge
