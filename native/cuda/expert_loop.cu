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
#include <limits>
#include <stdexcept>

#include "expert_kernels.cuh"
#include "graph_timer.cuh"
#include "loop_common.cuh"
#include "tuned_products.h"

namespace vla_edge {

namespace {

using namespace expert_kernels;

constexpr const char* kWho = "CUDA expert loop";
void check(cudaError_t e, const char* what) { loop_check(e, kWho, what); }

}  // namespace

struct CudaExpertLoop::Impl {
    CudaExpertSpec spec;
    AttentionForm attention = AttentionForm::tile64w8;  // prepare_attention
    int merge_warps = 2;        // merge_warps_for(attention, 2)
    bool vector_norms = true;   // vector_norms_wanted()
    std::unique_ptr<LoopStream> io;  // made once the device is selected
    std::unique_ptr<TunedProducts> products;  // racing nothing with VLA_EDGE_CUDA_TUNED_PRODUCTS=0: cuBLAS's default
    bool pdl = false;                         // programmatic dependent launches (pdl_wanted)
    // RoPE and the cache writes in the q/k/v product, GeGLU in the gate/up product, where the stream
    // product won their races (VLA_EDGE_CUDA_STREAM_FUSED=0: the products and the kernels after them
    // apart, A/B); `fused_*`: whether the last captured shape did
    bool fuse = true;
    mutable bool fused_rope = false, fused_geglu = false;
    // q and the chunk's own k / v rotated in the attention's tile kernel (TileRope) instead of by the rope
    // kernel before it, with one angle table per chunk (VLA_EDGE_CUDA_ROPE_IN_ATTENTION=1, opt-in until it
    // has run on a GPU; tile64w8 only, and not where the stream product's paired form already did RoPE);
    // `rope_in_used`: whether the last captured shape did
    bool rope_in = false;
    mutable bool rope_in_used = false;
    // the splits merged in the tile kernel's own launch after a grid barrier (TileMerge;
    // VLA_EDGE_CUDA_MERGE_IN_ATTENTION=1, opt-in until it has run on a GPU; tile64w8 only, where the device
    // launches cooperatively, holds the whole grid at once and the keys take at most kMergeInSplits
    // splits; otherwise the merge kernel); `merge_in_used`: whether the last captured shape did
    bool merge_in = false;
    int resident_blocks = 0;  // tile blocks of the merge-in form the device holds at once
    GridBarrier barrier;      // (fixed) its two words
    mutable bool merge_in_used = false;
    LoopBuffers fixed{kWho};  // for the loop's lifetime
    FlashSizing flash;                        // the flash form's plan (flash_sizing)
    LayerActivations act{kWho};
    float *xt = nullptr, *hf = nullptr;  // the actions, the final norm's output (with act's buffers)
    float* rope_cs = nullptr;            // (with act's buffers, rope_in) the chunk's RoPE angles: rope_table_kernel
    // ints: pos[T], rows[T], base[B], keys[B]. Declared last, so destroyed first: before the
    // buffers, products and stream its graphs use.
    CapturedShapes shapes{kWho};

    // Activations for T tokens and attention splits for `rows` (observation, split, query row)
    // triples; made again only when either falls short, and then the captured graphs, which point
    // at the old buffers, are dropped.
    void reserve(int T, int64_t rows) {
        const bool remade = act.reserve(spec, T, rows, [&](LoopBuffers& b, int n) {
            b.alloc(xt, int64_t{n} * spec.action_dim);
            b.alloc(hf, int64_t{n} * spec.hidden);
            if (rope_in) b.alloc(rope_cs, int64_t{n} * spec.head_dim);  // (cos, sin) per token and pair
        });
        if (remade) shapes.clear();
    }

    // Times the four layer products' algorithms at T tokens (TunedProducts::tune: on layer 0's
    // matrices, or cold over every layer's; once per T, before its graph is captured). Overwrites
    // the activations, which every step recomputes.
    void tune_products(int T) {
        std::vector<CudaMatrix> qkv, out, gate_up, down;
        for (const CudaExpertLayer& L : spec.layers) {
            qkv.push_back(L.qkv);
            out.push_back(L.out_w.front());
            gate_up.push_back(L.gate_up);
            down.push_back(L.down_w.front());
        }
        const Handicaps h = paired_handicaps(T);
        products->tune(qkv, act.hn, T, act.qkv, false, 0, h.rope_us);
        products->tune(out, act.attn, T, act.x, true);
        products->tune(gate_up, act.hn, T, act.gu, false, 0, h.geglu_us);
        products->tune(down, act.g, T, act.x, true);
    }

    // Where the stream product's paired forms would run (raced, and fuse on): the RoPE and GeGLU
    // kernels' times at T tokens, which every other candidate of the q/k/v and gate/up races needs
    // after it and the paired form does not (TunedProducts::tune's handicap). Zero otherwise.
    struct Handicaps {
        float rope_us = 0, geglu_us = 0;
    };
    Handicaps paired_handicaps(int T) const {
        Handicaps h;
        if (!fuse || !products->offers_stream()) return h;
        const CudaExpertSpec& s = spec;
        h.geglu_us = graph_time_us(io->stream, [&] { launch_geglu(io->stream, act.gu, s.ffn, T, act.g, act.ld_f); });
        if (rope_in) return h;  // RoPE in the attention: no candidate needs the rope kernel after it
        const int d = s.head_dim;
        const float theta_scale = std::pow(s.rope_theta, -2.0f / static_cast<float>(d));
        // RoPE into scratch cache rows (the real cache holds the prefix's K/V), tokens at positions 0 .. T - 1
        LoopBuffers scratch(kWho);
        int* ints = nullptr;
        __half *kc = nullptr, *vc = nullptr;
        scratch.alloc(ints, 2 * int64_t{T});
        scratch.alloc(kc, int64_t{T} * d);
        scratch.alloc(vc, int64_t{T} * d);
        std::vector<int> iota(2 * T);
        for (int t = 0; t < T; ++t) iota[t] = iota[T + t] = t;
        check(cudaMemcpy(ints, iota.data(), iota.size() * sizeof(int), cudaMemcpyHostToDevice), "timing RoPE");
        h.rope_us = graph_time_us(io->stream, [&] {
            launch_rope_cache(io->stream, T, act.qkv, s.heads, d, ints, ints + T, theta_scale, act.q16, kc, vc);
        });
        return h;
    }

    void launch_check(const char* what) const { check(cudaGetLastError(), what); }

    int attention_rows_ld() const { return expert_kernels::attention_rows_ld(attention, spec.horizon * spec.heads); }

    // Every kernel of the chunk, in stream order (captured once per shape).
    void enqueue(int B, const int* pos, const int* rows, const int* base, const int* keys, const SplitPlan& plan) const {
        const CudaExpertSpec& s = spec;
        const int T = B * s.horizon, E = s.hidden, A = s.action_dim, d = s.head_dim;
        const float dt = -1.0f / static_cast<float>(s.steps), scale = 1.0f / std::sqrt(static_cast<float>(d));
        const float theta_scale = std::pow(s.rope_theta, -2.0f / static_cast<float>(d));
        const int rows_total = s.horizon * s.heads, rows_ld = attention_rows_ld();
        const int64_t step_mod = 3 * int64_t{E};
        const cudaStream_t stream = io->stream;
        const PdlScope pdl_scope(pdl);
        merge_in_used = merge_in && plan.splits <= kMergeInSplits &&
                        int64_t{blocks(rows_total, kTileRows)} * plan.splits * B <= resident_blocks;
        if (rope_in) {  // the chunk's positions are the same in every step and layer: their angles once
            launch_kernel(rope_table_kernel, T, std::max(32, d / 2), 0, stream, pos, d / 2, theta_scale, rope_cs);
        }
        for (int step = 0; step < s.steps; ++step) {
            launch_kernel(action_in_kernel, T, kThreads, A * sizeof(float), stream, xt, A, s.action_in, s.action_in_bias, act.x, E);
            for (const CudaExpertLayer& L : s.layers) {
                const float *m1 = L.attn_mod1 + step * step_mod, *m = L.attn_mod + step * step_mod;
                launch_kernel(ada_norm_kernel<bf16>, T, kThreads, 0, stream, act.x, E, m1, m + E, s.eps, act.hn, act.ld_h,
                              vector_norms);
                stream_product::Paired rope;
                rope.kind = stream_product::PairedKind::rope;
                rope.pos = pos, rope.cache_rows = rows, rope.theta_scale = theta_scale, rope.heads = s.heads, rope.d = d;
                rope.q16 = act.q16, rope.kc = static_cast<__half*>(L.cache_k), rope.vc = static_cast<__half*>(L.cache_v);
                fused_rope = fuse && products->run_paired(L.qkv, act.hn, T, rope);
                rope_in_used = rope_in && !fused_rope;
                if (!fused_rope) products->run(L.qkv, act.hn, T, act.qkv, false);
                if (!fused_rope && !rope_in_used) {
                    launch_rope_cache(stream, T, act.qkv, s.heads, d, pos, rows, theta_scale, act.q16,
                                      static_cast<__half*>(L.cache_k), static_cast<__half*>(L.cache_v));
                }
                const __half *kc = static_cast<const __half*>(L.cache_k), *vc = static_cast<const __half*>(L.cache_v);
                const TileRope rope_source = rope_in_used ? TileRope{act.qkv, rope_cs, s.heads, s.horizon} : TileRope{};
                launch_attention_form(attention, d, plan, merge_warps, B, rows_total, rows_ld, stream, act.q16, kc, vc, base,
                                      keys, s.horizon, s.heads, scale, act.part_o, act.part_ml, act.attn, act.ld_o,
                                      rope_source, merge_in_used ? &barrier : nullptr);
                products->run(L.out_w[step], act.attn, T, act.x, true);  // the residual rides in the product
                const float *f1 = L.ffn_mod1 + step * step_mod, *f = L.ffn_mod + step * step_mod;
                launch_kernel(ada_norm_kernel<bf16>, T, kThreads, 0, stream, act.x, E, f1, f + E, s.eps, act.hn, act.ld_h,
                              vector_norms);
                stream_product::Paired geglu;
                geglu.g = act.g, geglu.ld = act.ld_f;
                fused_geglu = fuse && products->run_paired(L.gate_up, act.hn, T, geglu);
                if (!fused_geglu) {
                    products->run(L.gate_up, act.hn, T, act.gu, false);
                    launch_geglu(stream, static_cast<const float*>(act.gu), s.ffn, T, act.g, act.ld_f);
                }
                products->run(L.down_w[step], act.g, T, act.x, true);
            }
            const float *o1 = s.out_mod1 + step * step_mod, *o = s.out_mod + step * step_mod;
            launch_kernel(ada_norm_kernel<float>, T, kThreads, 0, stream, act.x, E, o1, o + E, s.eps, hf, int64_t{E},
                          vector_norms);
            launch_kernel(action_out_kernel, blocks(int64_t{T} * A * 32, kThreads), kThreads, 0, stream, hf, E, s.action_out,
                          s.action_out_bias, dt, xt, A, T);
        }
        launch_check("launching the expert kernels");
    }
};

CudaExpertLoop::CudaExpertLoop(CudaExpertSpec spec) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    const CudaExpertSpec& s = spec;
    auto fail = [](const std::string& why) { throw std::runtime_error(std::string(kWho) + ": " + why); };
    loop_require_device(kWho, s.device, s.head_dim);
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
    m.act.set_widths(s, first.qkv, first.out_w.front(), first.down_w.front());
    for (size_t i = 0; i < s.layers.size(); ++i) {
        const CudaExpertLayer& L = s.layers[i];
        const std::string at = "layer " + std::to_string(i) + ": ";
        auto bf16_matrix = [&](const CudaMatrix& w, int64_t rows, int64_t cols, int64_t stride, const char* what) {
            loop_require_bf16(kWho, at + what, w, rows, cols, stride);
        };
        bf16_matrix(L.qkv, int64_t{s.heads + 2} * s.head_dim, s.hidden, m.act.ld_h, "fused q/k/v");
        bf16_matrix(L.gate_up, 2 * int64_t{s.ffn}, s.hidden, m.act.ld_h, "fused gate/up");
        if (L.out_w.size() != static_cast<size_t>(s.steps) || L.down_w.size() != static_cast<size_t>(s.steps)) {
            fail(at + "needs an output and a down projection per flow step (gates folded)");
        }
        for (int step = 0; step < s.steps; ++step) {
            bf16_matrix(L.out_w[step], s.hidden, int64_t{s.heads} * s.head_dim, m.act.ld_o, "output projection");
            bf16_matrix(L.down_w[step], s.hidden, s.ffn, m.act.ld_f, "down projection");
        }
        if (!L.attn_mod || !L.attn_mod1 || !L.ffn_mod || !L.ffn_mod1 || !L.cache_k || !L.cache_v) {
            fail(at + "missing a modulation or its K/V cache");
        }
    }
    m.spec = std::move(spec);
    check(cudaSetDevice(m.spec.device), "selecting the device");
    m.attention = prepare_attention(kWho, m.spec.device, m.spec.head_dim);
    m.flash = flash_sizing(kWho, m.spec.device);
    m.merge_warps = merge_warps_for(m.attention, 2);
    m.vector_norms = vector_norms_wanted();
    m.pdl = pdl_wanted(kWho, m.spec.device);
    m.fuse = loop_switch("VLA_EDGE_CUDA_STREAM_FUSED", true);
    m.rope_in = loop_switch("VLA_EDGE_CUDA_ROPE_IN_ATTENTION", false) && rope_in_form(m.attention);
    if (m.rope_in) allow_shared_memory(kWho, tile_kernel_for(m.spec.head_dim, m.attention, true));
    if (loop_switch("VLA_EDGE_CUDA_MERGE_IN_ATTENTION", false) && rope_in_form(m.attention)) {
        int cooperative = 0, sms = 0;
        check(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, m.spec.device), "device attributes");
        check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, m.spec.device), "device attributes");
        m.resident_blocks = cooperative ? std::numeric_limits<int>::max() : 0;  // lowered to what each form holds
        for (bool rope : {false, true}) {  // RoPE-in or not, layer by layer (the stream product's paired form)
            const TileKernel k = tile_kernel_for(m.spec.head_dim, m.attention, rope, true);
            allow_shared_memory(kWho, k);
            int per_sm = 0;
            check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k.fn, 64 * kTileWarps, k.smem), "occupancy");
            m.resident_blocks = std::min(m.resident_blocks, per_sm * sms);
        }
        m.merge_in = m.resident_blocks > 0;
        if (m.merge_in) {
            unsigned* words = nullptr;
            m.fixed.alloc(words, 2);
            check(cudaMemset(words, 0, 2 * sizeof(unsigned)), "clearing the grid barrier");
            check(cudaDeviceSynchronize(), "clearing the grid barrier");  // before any stream of ours reads it
            m.barrier = GridBarrier{words, words + 1};
        }
    }
    m.io = std::make_unique<LoopStream>(kWho);
    // tuned unless VLA_EDGE_CUDA_TUNED_PRODUCTS=0 (the default since the H100 run of 2026-12-07); timed
    // cold unless VLA_EDGE_CUDA_TUNE_COLD=0 (the default since that day's fifth-session run, docs/gpu.md)
    m.products = std::make_unique<TunedProducts>(*m.io, loop_switch("VLA_EDGE_CUDA_TUNE_COLD", true),
                                                 loop_switch("VLA_EDGE_CUDA_TUNED_PRODUCTS", true));
}

CudaExpertLoop::~CudaExpertLoop() = default;

void cuda_clear_last_error() { (void)cudaGetLastError(); }

size_t CudaExpertLoop::captured_graphs() const { return impl_->shapes.size(); }

std::string CudaExpertLoop::describe() const {
    const Impl& m = *impl_;
    const std::string fused = std::string(m.fused_rope && m.fused_geglu ? "; RoPE and GeGLU in the products"
                                          : m.fused_rope               ? "; RoPE in the product"
                                          : m.fused_geglu              ? "; GeGLU in the product"
                                                                       : "") +
                              (m.rope_in_used ? "; RoPE in the attention" : "") +
                              (m.merge_in_used ? "; merge in the attention's launch" : "");
    return loop_forms_note(m.attention, m.merge_warps, m.products->describe() + fused, m.vector_norms, m.pdl);
}

void CudaExpertLoop::run(const std::vector<int>& n_prefix, const std::vector<int64_t>& bases, float* x) {
    Impl& m = *impl_;
    const CudaExpertSpec& s = m.spec;
    const int B = static_cast<int>(n_prefix.size()), H = s.horizon, T = B * H;
    std::vector<int> keys(n_prefix), chunk(B, H);  // the chunk's tokens follow each prefix
    for (int& k : keys) k += H;
    loop_require_ranges(kWho, bases, keys, s.cache_rows);
    check(cudaSetDevice(s.device), "selecting the device");
    const SplitPlan plan = split_plan(m.attention, H * s.heads, B, *std::max_element(keys.begin(), keys.end()), m.flash);
    m.reserve(T, int64_t{B} * plan.splits * m.attention_rows_ld());
    const std::vector<int64_t> key = CapturedShapes::key_of(n_prefix, bases);
    if (!m.shapes.has(key)) m.tune_products(T);  // before its graph is captured
    const std::vector<int> ints = token_indices(n_prefix, chunk, bases);
    const cudaGraphExec_t exec =
        m.shapes.get(key, ints, *m.io, [&](const int* p) { m.enqueue(B, p, p + T, p + 2 * T, p + 2 * T + B, plan); });
    const size_t bytes = static_cast<size_t>(T) * s.action_dim * sizeof(float);
    const cudaStream_t stream = m.io->stream;
    check(cudaMemcpyAsync(m.xt, x, bytes, cudaMemcpyHostToDevice, stream), "uploading the noise");
    check(cudaGraphLaunch(exec, stream), "launching the expert graph");
    check(cudaMemcpyAsync(x, m.xt, bytes, cudaMemcpyDeviceToHost, stream), "downloading the actions");
    check(cudaStreamSynchronize(stream), "running the expert loop");
}

}  // namespace vla_edge
