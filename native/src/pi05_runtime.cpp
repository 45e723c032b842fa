#include "pi05_runtime.h"

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "ggml-cpu.h"
#ifdef VLA_EDGE_WITH_CUDA
#include "ggml-cuda.h"
#include "loop_fallback.h"
#endif

namespace vla_edge {

namespace {

constexpr size_t kMaxNodes = 16384;

// An on/off switch from the environment: "1" on, "0" off, anything else (or unset) `fallback`.
bool env_switch(const char* name, bool fallback) {
    const char* value = std::getenv(name);
    if (value && std::string(value) == "1") return true;
    if (value && std::string(value) == "0") return false;
    return fallback;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// N of "cuda:N" (0 for "cuda").
int cuda_index(const std::string& device) { return device.size() > 5 ? std::stoi(device.substr(5)) : 0; }

ggml_backend_t make_backend(const std::string& device) {
    if (device == "cpu") return ggml_backend_cpu_init();
    if (device.rfind("cuda", 0) == 0) {
#ifdef VLA_EDGE_WITH_CUDA
        const int index = cuda_index(device);
        ggml_backend_t b = ggml_backend_cuda_init(index);
        if (!b) throw std::runtime_error("cannot initialise CUDA device " + std::to_string(index));
        return b;
#else
        throw std::runtime_error("device '" + device + "' needs a build with -DVLA_EDGE_CUDA=ON");
#endif
    }
    throw std::runtime_error("unknown device '" + device + "' (expected 'cpu' or 'cuda[:N]')");
}

}  // namespace

ggml_context* Pi05Runtime::Graph::begin(size_t max_nodes, ggml_tensor* marker) {
    release();
    meta.resize(ggml_tensor_overhead() * max_nodes + ggml_graph_overhead_custom(max_nodes, false));
    ggml_init_params p{meta.size(), meta.data(), /*no_alloc=*/true};
    ctx = ggml_init(p);
    gf = ggml_new_graph_custom(ctx, max_nodes, false);
    if (marker) ggml_build_forward_expand(gf, marker);  // nodes[0]: the key of this shape's CUDA graph
    io.clear();
    return ctx;
}

void Pi05Runtime::ShapeMarkers::enable(ggml_backend_t backend) {
    release();
    ggml_init_params p{ggml_tensor_overhead(), nullptr, /*no_alloc=*/true};
    source_ctx_ = ggml_init(p);
    ggml_tensor* source = ggml_new_tensor_1d(source_ctx_, GGML_TYPE_F32, 1);
    ggml_set_name(source, "shape_marker_source");
    source_buf_ = ggml_backend_alloc_ctx_tensors(source_ctx_, backend);
    if (!source_buf_) throw std::runtime_error("cannot allocate the graph shape markers' device tensor");
    source_ = source;
}

ggml_tensor* Pi05Runtime::ShapeMarkers::get(const Graph& stage, const std::vector<int>& key) {
    if (!source_) return nullptr;
    auto it = markers_.find({&stage, key});
    if (it != markers_.end()) return it->second;
    if (markers_.size() == contexts_.size() * kPerContext) {  // every context full (or none yet)
        ggml_init_params p{ggml_tensor_overhead() * kPerContext, nullptr, /*no_alloc=*/true};
        contexts_.push_back(ggml_init(p));
    }
    ggml_tensor* marker = ggml_view_1d(contexts_.back(), source_, 1, 0);
    ggml_set_name(marker, "shape_marker");
    if (ggml_backend_view_init(marker) != GGML_STATUS_SUCCESS) throw std::runtime_error("cannot place a graph shape marker");
    markers_.emplace(std::make_pair(&stage, key), marker);
    return marker;
}

void Pi05Runtime::ShapeMarkers::release() {
    markers_.clear();
    for (ggml_context* c : contexts_) ggml_free(c);
    contexts_.clear();
    if (source_buf_) ggml_backend_buffer_free(source_buf_);
    if (source_ctx_) ggml_free(source_ctx_);
    source_buf_ = nullptr;
    source_ctx_ = nullptr;
    source_ = nullptr;
}

void Pi05Runtime::Graph::release() {
    if (ctx) ggml_free(ctx);
    ctx = nullptr;
    gf = nullptr;
    key.clear();
}

Pi05Runtime::Pi05Runtime(const std::string& gguf_path, const RuntimeOptions& options) {
    if (options.n_threads <= 0) {
        throw std::invalid_argument("n_threads must be >= 1, got " + std::to_string(options.n_threads));
    }
    n_threads_ = options.n_threads;
    if (options.expert_graph != "auto" && options.expert_graph != "chunk" && options.expert_graph != "step") {
        throw std::invalid_argument("expert_graph must be 'auto', 'chunk' or 'step', got '" + options.expert_graph + "'");
    }
    if (options.attention != "auto" && options.attention != "flash" && options.attention != "matmul") {
        throw std::invalid_argument("attention must be 'auto', 'flash' or 'matmul', got '" + options.attention + "'");
    }
    const DeviceWeights requested_weights = device_weights_from_string(options.device_weights);
    const std::string& fm = options.fused_matrices;
    if (fm != "auto" && fm != "true" && fm != "false") {
        throw std::invalid_argument("fused_matrices must be 'auto', 'true' or 'false', got '" + fm + "'");
    }
    backend_ = make_backend(options.device);
    try {
        const bool cpu = ggml_backend_is_cpu(backend_);
        if (cpu) ggml_backend_cpu_set_n_threads(backend_, n_threads_);
        if (cpu && (requested_weights == DeviceWeights::f16 || requested_weights == DeviceWeights::bf16)) {
            throw std::invalid_argument("device_weights='" + options.device_weights + "' applies to GPU devices only; "
                                        "the CPU runs the pack's stored types");
        }
        chunk_expert_ = options.expert_graph == "chunk" || (options.expert_graph == "auto" && !cpu);
        if (cpu && fm == "true") {
            throw std::invalid_argument("fused_matrices applies to GPU devices only (CPU weights are the mapped file)");
        }
        const DeviceWeights device_weights = cpu ? DeviceWeights::stored : requested_weights;
        const FuseMatrices fuse = cpu || fm == "false" ? FuseMatrices::off
                                  : fm == "true"       ? FuseMatrices::on
                                                       : FuseMatrices::automatic;
        weights_ = std::make_unique<GgufWeights>(gguf_path, backend_, device_weights,
                                                 cpu_weights_from_string(options.cpu_weights), fuse);
        hp_ = Pi05Hparams::from_weights(*weights_);
        hp_.fused_cpu_ops = cpu && !options.unfused_ops;
        hp_.backend_gelu_ops = !cpu && !options.unfused_ops;
        choose_attention(options.attention, cpu);
        max_prefix_ = options.max_prefix_tokens > 0 ? options.max_prefix_tokens : 3 * hp_.num_patches() + 256;

        // flash attention's CUDA kernels read F16 K/V (F32 ones are converted on every call)
        cache_type_ = hp_.flash_text && !cpu ? GGML_TYPE_F16 : GGML_TYPE_F32;
        // Padded expert K/V ranges (ggml-CUDA's grouped-query flash kernel): on by default off the CPU
        // (H100, same-run A/B: expert 15.9 -> 15.0 ms at 2 views, docs/gpu.md); VLA_EDGE_PAD_EXPERT_KV=0
        // turns them off, =1 on also on the CPU (where the masked rows are only extra work).
        hp_.kv_pad = hp_.flash_text && env_switch("VLA_EDGE_PAD_EXPERT_KV", !cpu) ? 256 : 1;
        // Constants computed once instead of in every call's graph (docs/gpu.md; H200, same-run A/B at
        // 2 views: 27.1 -> 26.3 ms with the expert's, 25.8 ms with the Gemma norms' too): the Gemma
        // norms' 1 + w (everywhere); the expert's conditioning (chunk graph) and its gates folded into
        // per-step copies of the output / down projections (chunk graph, where memory allows, see
        // ensure_expert_constants). VLA_EDGE_GEMMA_PLUS_ONE / _CONSTANT_CONDITIONING /
        // _FOLD_EXPERT_GATES = 0 turn each off (A/B runs), _FOLD_EXPERT_GATES=1 forces the fold.
        if (env_switch("VLA_EDGE_GEMMA_PLUS_ONE", true)) {
            prefix_constants_.compute(backend_, 1024, [&](ggml_context* c) { return define_prefix_constants(c, *weights_, hp_); });
        }
        const char* fold = std::getenv("VLA_EDGE_FOLD_EXPERT_GATES");
        fold_gates_ = !chunk_expert_ ? FoldGates::off
                      : fold && std::string(fold) == "1" ? FoldGates::on
                      : fold && std::string(fold) == "0" ? FoldGates::off
                                                         : FoldGates::automatic;
        constant_conditioning_ = chunk_expert_ && (fold_gates_ == FoldGates::on ||
                                                   env_switch("VLA_EDGE_CONSTANT_CONDITIONING", !cpu));
        // Our own CUDA loop for the chunk's flow steps (cuda_expert_loop.h): wanted on CUDA devices with
        // the chunk graph; VLA_EDGE_CUDA_EXPERT=0 keeps ggml's graph (A/B runs). use_cuda_expert decides
        // at the first chunk whether the weights and the device fit it, and says why not.
        const bool cuda = options.device.rfind("cuda", 0) == 0;  // make_backend made a CUDA backend
        cuda_expert_wanted_ = cuda && chunk_expert_ && env_switch("VLA_EDGE_CUDA_EXPERT", true);
        cuda_expert_note_ = !cuda                 ? "ggml graph"
                            : !chunk_expert_        ? "ggml graph (per-step graphs)"
                            : !cuda_expert_wanted_  ? "ggml graph (VLA_EDGE_CUDA_EXPERT=0)"
                                                    : "";  // set by drop_cuda_expert below
        // The prefix's loop (cuda_prefix_loop.h): on CUDA devices unless VLA_EDGE_CUDA_PREFIX=0 (A/B runs);
        // H100, 2026-12-07: prefix 7.6 -> 5.7 ms at 2 views, the whole chunk 21.6 -> 19.4 ms (docs/gpu.md).
        cuda_prefix_wanted_ = cuda && env_switch("VLA_EDGE_CUDA_PREFIX", true);
        cuda_prefix_note_ = !cuda ? "ggml graph" : !cuda_prefix_wanted_ ? "ggml graph (VLA_EDGE_CUDA_PREFIX=0)" : "";
        // The vision tower's loop (cuda_vision_loop.h): on CUDA devices unless VLA_EDGE_CUDA_VISION=0
        // (A/B runs); H100, same run: vision 6.6 -> 3.6 ms at 2 views (docs/gpu.md).
        cuda_vision_wanted_ = cuda && env_switch("VLA_EDGE_CUDA_VISION", true);
        cuda_vision_note_ = !cuda                  ? "ggml graph"
                            : !cuda_vision_wanted_ ? "ggml graph (VLA_EDGE_CUDA_VISION=0)"
                                                   : "cuda, if the first call's weights fit it";
        cuda_device_ = cuda ? cuda_index(options.device) : 0;
        allocate_cache(static_cast<int>(kv_span(max_prefix_, hp_.horizon, hp_.kv_pad)));
        for (Graph* g : {&vision_, &prefix_, &expert_, &chunk_}) {
            g->alloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend_));
        }
        // VLA_EDGE_SHAPE_MARKERS: unset = on off the CPU; "0" = off (ggml's shared key, GPU A/B runs
        // only); "1" = on, also on the CPU (where tests check that marked graphs compute the same).
        const char* env = std::getenv("VLA_EDGE_SHAPE_MARKERS");
        const std::string markers = env ? env : "";
        if (markers == "1" || (!cpu && markers != "0")) markers_.enable(backend_);
    } catch (...) {
        release();
        throw;
    }
}

Pi05Runtime::~Pi05Runtime() { release(); }

void Pi05Runtime::allocate_cache(int tokens) {
    // Persistent prefix KV cache, written by the prefix graph, read by every expert step. The
    // graphs that point into an old cache are dropped (rebuilt on their next call).
    for (Graph* g : {&prefix_, &expert_, &chunk_}) g->release();
    drop_cuda_expert();
    drop_cuda_prefix();
    if (cache_buf_) ggml_backend_buffer_free(cache_buf_);
    if (cache_ctx_) ggml_free(cache_ctx_);
    cache_buf_ = nullptr;
    cache_.k.clear();
    cache_.v.clear();
    const int layers = hp_.llm.layers;
    ggml_init_params p{ggml_tensor_overhead() * (2 * layers + 1), nullptr, true};
    cache_ctx_ = ggml_init(p);
    const int64_t row = static_cast<int64_t>(hp_.llm.head_dim) * hp_.llm.kv_heads;
    for (int i = 0; i < layers; ++i) {
        cache_.k.push_back(ggml_new_tensor_2d(cache_ctx_, cache_type_, row, tokens));
        cache_.v.push_back(ggml_new_tensor_2d(cache_ctx_, cache_type_, row, tokens));
    }
    cache_tokens_ = 0;
    cache_buf_ = ggml_backend_alloc_ctx_tensors(cache_ctx_, backend_);
    if (!cache_buf_) throw std::runtime_error("cannot allocate the KV cache for " + std::to_string(tokens) + " tokens");
    // Rows no token has written yet are read (masked) by padded ranges: they must hold finite values,
    // since a masked NaN still poisons the weighted sum of V (0 * NaN). Unpadded ranges read only
    // rows written in the same call.
    if (hp_.kv_pad > 1) ggml_backend_buffer_clear(cache_buf_, 0);
    cache_tokens_ = tokens;
}

void Pi05Runtime::release() {
    for (Graph* g : {&vision_, &prefix_, &expert_, &chunk_}) {
        g->release();
        if (g->alloc) ggml_gallocr_free(g->alloc);
        g->alloc = nullptr;
    }
    markers_.release();
    drop_cuda_expert();
    drop_cuda_prefix();
#ifdef VLA_EDGE_WITH_CUDA
    cuda_vision_.reset();  // before the weights it reads
#endif
    prefix_constants_.release();
    expert_constants_.release();
    if (cache_buf_) ggml_backend_buffer_free(cache_buf_);
    if (cache_ctx_) ggml_free(cache_ctx_);
    cache_buf_ = nullptr;
    cache_ctx_ = nullptr;
    weights_.reset();
    if (backend_) ggml_backend_free(backend_);
    backend_ = nullptr;
}

std::string Pi05Runtime::backend_name() const { return ggml_backend_name(backend_); }

void Pi05Runtime::choose_attention(const std::string& option, bool cpu) {
    // Asked for: every stage with "flash"; with "auto" every stage off the CPU, and on the CPU the
    // vision tower only (same-run A/B on the full pack, 2 threads: vision 0.85x, prefix 1.02x,
    // expert 1.21x the time of the matmul form; docs/x86.md). Run: where the backend executes a
    // flash-attention node of the stage's head layout (the graph builder asks again per node).
    const bool text_wanted = option == "flash" || (option == "auto" && !cpu);
    const bool vision_wanted = option != "matmul";
    std::vector<uint8_t> meta(8 * ggml_tensor_overhead());
    ggml_init_params p{meta.size(), meta.data(), /*no_alloc=*/true};
    ggml_context* ctx = ggml_init(p);
    auto runs = [&](int head_dim, int heads, int kv_heads) {
        ggml_tensor* q = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, head_dim, 64, heads);
        ggml_tensor* k = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, head_dim, 256, kv_heads);
        ggml_tensor* v = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, head_dim, 256, kv_heads);
        ggml_tensor* fa = ggml_flash_attn_ext(ctx, q, k, v, nullptr, 1.0f, 0.0f, 0.0f);
        ggml_prec_set_acc(fa, GGML_PREC_F32);
        return ggml_backend_supports_op(backend_, fa);
    };
    const bool vision_runs = runs(hp_.v_hidden / hp_.v_heads, hp_.v_heads, hp_.v_heads);
    const bool text_runs = runs(hp_.llm.head_dim, hp_.llm.heads, hp_.llm.kv_heads);  // the expert shares it
    ggml_free(ctx);
    hp_.flash_vision = vision_wanted && vision_runs ? backend_ : nullptr;
    hp_.flash_text = text_wanted && text_runs ? backend_ : nullptr;
    const bool v = hp_.flash_vision, t = hp_.flash_text;
    attention_ = v && t ? "flash" : !v && !t ? "matmul" : v ? "flash (vision), matmul (prefix, expert)"
                                                            : "matmul (vision), flash (prefix, expert)";
    if ((vision_wanted && !vision_runs) || (text_wanted && !text_runs)) {
        attention_ += std::string("; ") + backend_name() + " does not run flash attention for " +
                      (vision_wanted && !vision_runs ? (text_wanted && !text_runs ? "any stage" : "the vision tower")
                                                     : "prefix and expert");
    }
}

const char* Pi05Runtime::gelu_ops() const {
    return hp_.fused_cpu_ops ? "fused-cpu" : hp_.backend_gelu_ops ? "ggml-ops" : "element-wise";
}

size_t Pi05Runtime::compute_buffer_bytes() const {
    size_t total = cache_buf_ ? ggml_backend_buffer_get_size(cache_buf_) : 0;
    for (const Graph* g : {&vision_, &prefix_, &expert_, &chunk_}) total += ggml_gallocr_get_buffer_size(g->alloc, 0);
    return total;
}

void Pi05Runtime::set_matmul_observer(MatmulObserver observer) {
    observer_ = std::move(observer);
    for (Graph* g : {&vision_, &prefix_, &expert_, &chunk_}) g->key.clear();  // rebuilt with / without kept inputs
}

void Pi05Runtime::keep_matmul_inputs(Graph& g) {
    g.observed.clear();
    for (int i = 0; i < ggml_graph_n_nodes(g.gf); ++i) {
        ggml_tensor* node = ggml_graph_node(g.gf, i);
        if (node->op != GGML_OP_MUL_MAT) continue;
        ggml_tensor* w = node->src[0];
        while (w->view_src) w = w->view_src;  // the patch embedding's kernel is a reshaped view
        if (!weights_->find(w->name)) continue;  // attention products: activations on both sides
        ggml_tensor* x = node->src[1];
        if (x->type != GGML_TYPE_F32 || !ggml_is_contiguous(x)) {
            throw std::runtime_error(std::string("matmul observer: the input of ") + w->name +
                                     " is not a contiguous float32 tensor");
        }
        for (ggml_tensor* t = x; t; t = t->view_src) ggml_set_output(t);
        g.observed.emplace_back(w->name, x);
    }
}

void Pi05Runtime::report_matmul_inputs(const Graph& g) const {
    std::vector<float> host;
    for (const auto& [name, x] : g.observed) {
        host.resize(static_cast<size_t>(ggml_nelements(x)));
        ggml_backend_tensor_get(x, host.data(), 0, ggml_nbytes(x));
        observer_(name, host.data(), ggml_nrows(x), x->ne[0]);
    }
}

void Pi05Runtime::finish(Graph& g, const char* stage) {
    g.observed.clear();
    if (observer_) keep_matmul_inputs(g);
    if (!ggml_gallocr_alloc_graph(g.alloc, g.gf)) {
        throw std::runtime_error(std::string("cannot allocate compute memory for the ") + stage + " graph");
    }
    ++graph_builds_;
}

void Pi05Runtime::compute(Graph& g) {
    if (ggml_backend_graph_compute(backend_, g.gf) != GGML_STATUS_SUCCESS) {
        throw std::runtime_error("ggml graph computation failed on backend " + backend_name());
    }
    if (observer_) report_matmul_inputs(g);
}

void Pi05Runtime::ensure_vision(int n_images) {
    if (vision_.key == std::vector<int>{n_images}) return;
    ggml_context* ctx = vision_.begin(kMaxNodes, markers_.get(vision_, {n_images}));
    const int64_t pp3 = static_cast<int64_t>(hp_.patch) * hp_.patch * 3;
    ggml_tensor* patches = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, pp3, static_cast<int64_t>(hp_.num_patches()) * n_images);
    ggml_set_input(patches);
    ggml_tensor* out = build_vision(ctx, *weights_, hp_, patches);
    ggml_set_output(out);
    ggml_build_forward_expand(vision_.gf, out);
    vision_.io = {{"patches", patches}, {"out", out}};
    finish(vision_, "vision");
    vision_.key = {n_images};
}

void Pi05Runtime::ensure_prefix(const std::vector<int>& n_prefix) {
    if (prefix_.key == n_prefix) return;
    const int n = std::accumulate(n_prefix.begin(), n_prefix.end(), 0);
    ggml_context* ctx = prefix_.begin(kMaxNodes, markers_.get(prefix_, n_prefix));
    ggml_tensor* emb = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp_.llm.hidden, n);
    ggml_tensor* pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_tensor* rows = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, n);
    for (ggml_tensor* in : {emb, pos, rows}) ggml_set_input(in);
    build_prefix(ctx, prefix_.gf, *weights_, hp_, emb, pos, rows, cache_, n_prefix,
                 prefix_constants_.empty() ? nullptr : &prefix_constants_);
    prefix_.io = {{"emb", emb}, {"pos", pos}, {"rows", rows}};
    finish(prefix_, "prefix");
    prefix_.key = n_prefix;
}

void Pi05Runtime::ensure_expert(const std::vector<int>& n_prefix) {
    if (expert_.key == n_prefix) return;
    const int64_t tokens = static_cast<int64_t>(hp_.horizon) * n_prefix.size();
    ggml_context* ctx = expert_.begin(kMaxNodes, markers_.get(expert_, n_prefix));
    ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp_.action_dim, tokens);
    ggml_tensor* t = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp_.expert.hidden, 1);
    ggml_tensor* pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, tokens);
    ggml_tensor* rows = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, tokens);
    for (ggml_tensor* in : {x, t, pos, rows}) ggml_set_input(in);
    expert_.io = {{"x", x}, {"t", t}, {"pos", pos}, {"rows", rows}};
    const std::vector<ggml_tensor*> masks = expert_masks(ctx, expert_, n_prefix);
    const ExpertConditioning cond = build_expert_conditioning(ctx, *weights_, hp_, t);
    ggml_tensor* v = build_expert_step(ctx, expert_.gf, *weights_, hp_, x, cond, 0, pos, rows, cache_, n_prefix, masks);
    ggml_set_output(v);
    ggml_build_forward_expand(expert_.gf, v);
    expert_.io["v"] = v;
    finish(expert_, "expert");
    expert_.key = n_prefix;
}

void Pi05Runtime::ensure_expert_chunk(const std::vector<int>& n_prefix, int num_steps) {
    std::vector<int> key = n_prefix;
    key.push_back(num_steps);
    if (chunk_.key == key) return;
    if (constant_conditioning_) ensure_expert_constants(num_steps);
    const ConstantTensors* constants = constant_conditioning_ ? &expert_constants_ : nullptr;
    // Per flow step and layer the expert adds well under 128 tensors (views included), plus
    // under 32 per further observation (its attention).
    const size_t per_layer = 128 + 32 * (n_prefix.size() - 1);
    ggml_context* ctx = chunk_.begin(4096 + static_cast<size_t>(num_steps) * (hp_.expert.layers + 2) * per_layer,
                                     markers_.get(chunk_, key));
    const int64_t tokens = static_cast<int64_t>(hp_.horizon) * n_prefix.size();
    ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp_.action_dim, tokens);
    ggml_tensor* pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, tokens);
    ggml_tensor* rows = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, tokens);
    for (ggml_tensor* in : {x, pos, rows}) ggml_set_input(in);
    chunk_.io = {{"x", x}, {"pos", pos}, {"rows", rows}};
    ggml_tensor* t = nullptr;  // the flow times, where the conditioning is computed in this graph
    if (!constants) {
        t = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp_.expert.hidden, num_steps);
        ggml_set_input(t);
        chunk_.io["t"] = t;
    }
    const std::vector<ggml_tensor*> masks = expert_masks(ctx, chunk_, n_prefix);
    // Euler from t = 1 (noise) to t = 0, as the host loop of the per-step graph does it.
    const float dt = -1.0f / static_cast<float>(num_steps);
    ggml_tensor* xs = x;
    const ExpertConditioning cond = constants ? conditioning_from(*constants, hp_)
                                              : build_expert_conditioning(ctx, *weights_, hp_, t);
    for (int step = 0; step < num_steps; ++step) {
        ggml_tensor* v = build_expert_step(ctx, chunk_.gf, *weights_, hp_, xs, cond, step, pos, rows, cache_, n_prefix,
                                           masks, constants);
        xs = ggml_add(ctx, xs, ggml_scale(ctx, v, dt));
    }
    ggml_set_output(xs);
    ggml_build_forward_expand(chunk_.gf, xs);
    chunk_.io["out"] = xs;
    finish(chunk_, "expert");
    chunk_.key = key;
}

void Pi05Runtime::ensure_expert_constants(int num_steps) {
    if (expert_constant_steps_ == num_steps) return;
    // host_time_ holds this schedule's time embedding. The fold costs a copy of every layer's output
    // and down projection per step (2.2 GB in BF16 for pi0.5 at 10 steps): automatic folds only on a
    // discrete GPU, only 16-bit / F32 matrices (widened ones), with max(2 GiB, 10%) still free after.
    expert_constant_steps_ = 0;
    drop_cuda_expert();
    expert_constants_.release();
    size_t fold_bytes = 0;
    for (int i = 0; i < hp_.expert.layers; ++i) {
        for (ggml_tensor* w : foldable_matrices(*weights_, hp_, i)) fold_bytes += w ? ggml_nbytes(w) * num_steps : 0;
    }
    bool fold = fold_gates_ == FoldGates::on;
    std::string why = "asked for";
    if (fold_gates_ == FoldGates::automatic) {
        ggml_backend_dev_t dev = ggml_backend_get_device(backend_);
        size_t free = 0, total = 0;
        if (dev) ggml_backend_dev_memory(dev, &free, &total);
        const bool discrete = dev && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU;
        const size_t spare = std::max<size_t>(size_t{2} << 30, total / 10);
        fold = discrete && fold_bytes > 0 && fold_bytes + spare <= free;
        why = !discrete ? "not a discrete GPU" : fold_bytes == 0 ? "quantised matrices" : fold ? "auto: room" : "auto: no room";
    }
    const size_t nodes = 1024 + static_cast<size_t>(num_steps) * hp_.expert.layers * 8;
    auto make = [&](bool with_fold) {
        expert_constants_.compute(backend_, nodes, [&](ggml_context* c) {
            return define_expert_constants(c, *weights_, hp_, host_time_.data(), num_steps, with_fold);
        });
    };
    try {
        make(fold);
    } catch (const std::runtime_error&) {
        if (!fold || fold_gates_ != FoldGates::automatic) throw;
        fold = false;  // the memory seen free was not there after all: keep the multiplies, say so
        why = "auto: allocation failed";
        make(false);
    }
    expert_constant_steps_ = num_steps;
    char note[160];
    std::snprintf(note, sizeof note, "conditioning for %d steps; gates %s (%s, %.2f GiB)", num_steps,
                  fold ? "folded" : "multiplied", why.c_str(), fold ? fold_bytes / 1073741824.0 : 0.0);
    expert_constants_note_ = note;
}

std::string Pi05Runtime::constants_note() const {
    std::string note = prefix_constants_.empty() ? "" : "gemma norms 1 + w";
    if (constant_conditioning_) {
        note += std::string(note.empty() ? "" : "; ") +
                (expert_constants_note_.empty() ? "expert conditioning (made at the first chunk)" : expert_constants_note_);
    }
    return note.empty() ? "none" : note;
}

#ifdef VLA_EDGE_WITH_CUDA
namespace {
// One of our CUDA loops made from its spec, or left empty with `note` saying why ggml's graph runs.
template <typename Loop, typename MakeSpec>
void make_cuda_loop(std::unique_ptr<Loop>& loop, std::string& note, MakeSpec make_spec) {
    try {
        loop = std::make_unique<Loop>(make_spec());
        note.clear();
    } catch (const std::exception& e) {
        note = std::string("ggml graph (") + e.what() + ")";
    }
}

// A loop made once (at the first call that asks, `decided` then set) unless a matmul observer needs
// ggml's graph: whether it runs this call.
template <typename Loop, typename MakeSpec>
bool decide_cuda_loop(std::unique_ptr<Loop>& loop, bool& decided, std::string& note, bool observer, MakeSpec make_spec) {
    if (observer) {  // calibration reads the ggml graph's product inputs
        note = "ggml graph (a matmul observer is set)";
        return false;
    }
    if (!decided) {
        decided = true;
        make_cuda_loop(loop, note, make_spec);
    }
    return static_cast<bool>(loop);
}

// "cuda (own kernels, N <what> captured; <the loop's describe()>)" for a loop that runs, else its note.
template <typename Loop>
std::string cuda_loop_note(const std::unique_ptr<Loop>& loop, const std::string& note, const char* what) {
    if (!loop) return note;
    return "cuda (own kernels, " + std::to_string(loop->captured_graphs()) + " " + what + " captured; " + loop->describe() + ")";
}
}  // namespace
#endif

void Pi05Runtime::drop_cuda_expert() {
#ifdef VLA_EDGE_WITH_CUDA
    cuda_expert_.reset();
#endif
    cuda_expert_steps_ = 0;
    if (cuda_expert_wanted_) cuda_expert_note_ = "cuda, if the next chunk's weights fit it";
}

std::string Pi05Runtime::expert_loop() const {
#ifdef VLA_EDGE_WITH_CUDA
    return cuda_loop_note(cuda_expert_, cuda_expert_note_, "shapes");
#else
    return cuda_expert_note_;
#endif
}

bool Pi05Runtime::use_cuda_expert(int num_steps) {
    if (!cuda_expert_wanted_) return false;
#ifdef VLA_EDGE_WITH_CUDA
    if (observer_) {  // calibration reads the ggml graph's product inputs
        cuda_expert_note_ = "ggml graph (a matmul observer is set)";
        return false;
    }
    if (constant_conditioning_) ensure_expert_constants(num_steps);
    if (cuda_expert_steps_ == num_steps) return static_cast<bool>(cuda_expert_);
    cuda_expert_steps_ = num_steps;  // decided once per step count (and again after the cache or constants change)
    make_cuda_loop(cuda_expert_, cuda_expert_note_, [&] { return cuda_expert_spec(num_steps); });
    return static_cast<bool>(cuda_expert_);
#else
    (void)num_steps;
    return false;
#endif
}

void Pi05Runtime::drop_cuda_prefix() {
#ifdef VLA_EDGE_WITH_CUDA
    cuda_prefix_.reset();
#endif
    cuda_prefix_decided_ = false;
    if (cuda_prefix_wanted_) cuda_prefix_note_ = "cuda, if the next call's weights fit it";
}

std::string Pi05Runtime::prefix_loop() const {
#ifdef VLA_EDGE_WITH_CUDA
    return cuda_loop_note(cuda_prefix_, cuda_prefix_note_, "shapes");
#else
    return cuda_prefix_note_;
#endif
}

bool Pi05Runtime::use_cuda_prefix() {
    if (!cuda_prefix_wanted_) return false;
#ifdef VLA_EDGE_WITH_CUDA  // decided again after the cache changes (drop_cuda_prefix)
    return decide_cuda_loop(cuda_prefix_, cuda_prefix_decided_, cuda_prefix_note_, static_cast<bool>(observer_),
                            [&] { return cuda_prefix_spec(); });
#else
    return false;
#endif
}

std::string Pi05Runtime::vision_loop() const {
#ifdef VLA_EDGE_WITH_CUDA
    return cuda_loop_note(cuda_vision_, cuda_vision_note_, "image counts");
#else
    return cuda_vision_note_;
#endif
}

bool Pi05Runtime::use_cuda_vision() {
    if (!cuda_vision_wanted_) return false;
#ifdef VLA_EDGE_WITH_CUDA  // it reads only the weights: decided once
    return decide_cuda_loop(cuda_vision_, cuda_vision_decided_, cuda_vision_note_, static_cast<bool>(observer_),
                            [&] { return cuda_vision_spec(); });
#else
    return false;
#endif
}

#ifdef VLA_EDGE_WITH_CUDA
namespace {
// A device tensor as our CUDA loops read it: a matrix with `cols` meaningful input columns (the
// stored width may be padded), or a float32 vector; throws naming what does not fit.
CudaMatrix cuda_matrix(const ggml_tensor* t, int64_t cols, const std::string& name) {
    if (!t) throw std::runtime_error(name + " is not on the device in the form the loop reads (fused / folded BF16)");
    const bool plain = t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_F16 || t->type == GGML_TYPE_BF16;
    if (!plain || !ggml_is_contiguous(t)) {
        throw std::runtime_error(name + " is " + ggml_type_name(t->type) + ", not a plain F32 / F16 / BF16 matrix");
    }
    const CudaElem type = t->type == GGML_TYPE_F32 ? CudaElem::f32 : t->type == GGML_TYPE_F16 ? CudaElem::f16 : CudaElem::bf16;
    return CudaMatrix{t->data, type, t->ne[1], cols, t->ne[0]};
}

const float* cuda_f32(const ggml_tensor* t, const std::string& name, int64_t elements) {
    if (!t || t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t) || ggml_nelements(t) < elements) {
        throw std::runtime_error(name + " is not a float32 vector of " + std::to_string(elements) + " values on the device");
    }
    return static_cast<const float*>(t->data);
}
}  // namespace

CudaStackShape Pi05Runtime::cuda_stack_shape(const StackHparams& m) const {
    CudaStackShape s;
    s.device = cuda_device_;
    s.hidden = m.hidden;
    s.ffn = m.ffn;
    s.heads = m.heads;
    s.head_dim = m.head_dim;
    s.eps = m.eps;
    s.rope_theta = hp_.rope_theta;
    s.cache_rows = cache_tokens_;
    return s;
}

CudaPrefixSpec Pi05Runtime::cuda_prefix_spec() const {
    const StackHparams& m = hp_.llm;
    auto fail = [](const std::string& why) { throw std::runtime_error(why); };
    if (prefix_constants_.empty()) fail("the Gemma norms' 1 + w are not constants: VLA_EDGE_GEMMA_PLUS_ONE=0");
    if (m.kv_heads != 1) fail("the LLM has " + std::to_string(m.kv_heads) + " K/V heads, the loop takes 1");
    if (cache_type_ != GGML_TYPE_F16) fail("the K/V cache is not F16 (flash attention is off)");
    // attention reads up to the next 16 rows of each range: zero-filled only where ranges are padded
    if (hp_.kv_pad < 16 || hp_.kv_pad % 16) fail("K/V ranges are not padded: VLA_EDGE_PAD_EXPERT_KV=0");
    if (static_cast<size_t>(m.layers) > cache_.k.size()) fail("the LLM has more layers than the K/V cache");
    CudaPrefixSpec s;
    static_cast<CudaStackShape&>(s) = cuda_stack_shape(m);
    for (int i = 0; i < m.layers; ++i) {
        const std::string b = "pali.blk." + std::to_string(i) + ".";
        const bool last = i + 1 == m.layers;
        CudaPrefixLayer L;
        L.qkv = cuda_matrix(weights_->fused(b + "attn_qkv.weight"), m.hidden, b + "attn_qkv.weight");
        const std::string attn_norm = b + "attn_norm.weight" + kPlusOne, ffn_norm = b + "ffn_norm.weight" + kPlusOne;
        L.attn_norm1 = cuda_f32(prefix_constants_.find(attn_norm), attn_norm, m.hidden);
        if (!last) {  // the loop stops after the last layer's K/V
            L.out = cuda_matrix(weights_->get(b + "attn_o.weight"), int64_t{m.heads} * m.head_dim, b + "attn_o.weight");
            L.gate_up = cuda_matrix(weights_->fused(b + "ffn_gate_up.weight"), m.hidden, b + "ffn_gate_up.weight");
            L.down = cuda_matrix(weights_->get(b + "ffn_down.weight"), m.ffn, b + "ffn_down.weight");
            L.ffn_norm1 = cuda_f32(prefix_constants_.find(ffn_norm), ffn_norm, m.hidden);
        }
        L.cache_k = cache_.k[i]->data;
        L.cache_v = cache_.v[i]->data;
        s.layers.push_back(std::move(L));
    }
    return s;
}

CudaVisionSpec Pi05Runtime::cuda_vision_spec() const {
    const int64_t H = hp_.v_hidden, P = hp_.patch, D = hp_.llm.hidden;
    auto f32 = [&](const std::string& name, int64_t elements) { return cuda_f32(weights_->find(name), name, elements); };
    auto matrix = [&](const std::string& name, int64_t cols) { return cuda_matrix(weights_->find(name), cols, name); };
    CudaVisionSpec s;
    s.device = cuda_device_;
    s.width = hp_.v_hidden;
    s.heads = hp_.v_heads;
    s.head_dim = hp_.v_hidden / hp_.v_heads;
    s.ffn = hp_.v_ffn_stored;
    s.tokens_per_image = hp_.num_patches();
    s.patch_values = static_cast<int>(P * P * 3);
    s.eps = hp_.v_eps;
    // the kernel's (kx, ky, channel) layout per output row is what patchify writes (build_vision)
    const ggml_tensor* kernel = weights_->find("v.patch_embd.weight");
    s.patch_w = cuda_matrix(kernel, s.patch_values, "v.patch_embd.weight");
    s.patch_w.rows = H;  // a 4-d tensor [H][3][P][P]: H rows of P * P * 3
    s.patch_w.stride = s.patch_values;
    if (kernel && ggml_nelements(kernel) != H * s.patch_values) throw std::runtime_error("v.patch_embd.weight has the wrong size");
    s.patch_b = f32("v.patch_embd.bias", H);
    s.position = matrix("v.position_embd.weight", H);
    for (int i = 0; i < hp_.v_layers; ++i) {
        const std::string b = "v.blk." + std::to_string(i) + ".";
        CudaVisionLayer L;
        L.ln1_w = f32(b + "ln1.weight", H);
        L.ln1_b = f32(b + "ln1.bias", H);
        L.ln2_w = f32(b + "ln2.weight", H);
        L.ln2_b = f32(b + "ln2.bias", H);
        const ggml_tensor* fused = weights_->fused(b + "attn_qkv.weight");
        const ggml_tensor* fused_bias = weights_->fused(b + "attn_qkv.bias");
        if (fused && fused_bias) {  // VLA_EDGE_FUSE_VISION_QKV=1: one product
            L.qkv = cuda_matrix(fused, H, b + "attn_qkv.weight");
            L.q_b = cuda_f32(fused_bias, b + "attn_qkv.bias", 3 * H);
            L.k_b = L.q_b + H;
            L.v_b = L.q_b + 2 * H;
        } else {
            L.q = matrix(b + "attn_q.weight", H);
            L.k = matrix(b + "attn_k.weight", H);
            L.v = matrix(b + "attn_v.weight", H);
            L.q_b = f32(b + "attn_q.bias", H);
            L.k_b = f32(b + "attn_k.bias", H);
            L.v_b = f32(b + "attn_v.bias", H);
        }
        L.out = matrix(b + "attn_out.weight", H);
        L.out_b = f32(b + "attn_out.bias", H);
        L.up = matrix(b + "ffn_up.weight", H);
        L.up_b = f32(b + "ffn_up.bias", hp_.v_ffn_stored);
        L.down = matrix(b + "ffn_down.weight", hp_.v_ffn_stored);
        L.down_b = f32(b + "ffn_down.bias", H);
        s.layers.push_back(std::move(L));
    }
    s.post_w = f32("v.post_ln.weight", H);
    s.post_b = f32("v.post_ln.bias", H);
    s.proj = matrix("mm.0.weight", H);
    s.proj_b = f32("mm.0.bias", D);
    s.out_width = static_cast<int>(D);
    return s;
}

CudaExpertSpec Pi05Runtime::cuda_expert_spec(int num_steps) const {
    const StackHparams& e = hp_.expert;
    auto fail = [](const std::string& why) { throw std::runtime_error(why); };
    if (!constant_conditioning_) fail("the conditioning is not constant: VLA_EDGE_CONSTANT_CONDITIONING=0");
    if (e.kv_heads != 1) fail("the expert has " + std::to_string(e.kv_heads) + " K/V heads, the loop takes 1");
    if (cache_type_ != GGML_TYPE_F16) fail("the K/V cache is not F16 (flash attention is off)");
    if (hp_.kv_pad < 16 || hp_.kv_pad % 16) fail("K/V ranges are not padded: VLA_EDGE_PAD_EXPERT_KV=0");
    if (static_cast<size_t>(e.layers) > cache_.k.size()) fail("the expert has more layers than the K/V cache");
    auto f32 = [&](const std::string& name, int64_t elements) {
        const ggml_tensor* constant = expert_constants_.find(name);
        return cuda_f32(constant ? constant : weights_->find(name), name, elements);
    };
    CudaExpertSpec s;
    static_cast<CudaStackShape&>(s) = cuda_stack_shape(e);
    s.horizon = hp_.horizon;
    s.action_dim = hp_.action_dim;
    s.steps = num_steps;
    const int64_t mods = 3 * int64_t{e.hidden} * num_steps;
    for (int i = 0; i < e.layers; ++i) {
        const std::string b = "action.blk." + std::to_string(i) + ".";
        CudaExpertLayer L;
        L.qkv = cuda_matrix(weights_->fused(b + "attn_qkv.weight"), e.hidden, b + "attn_qkv.weight");
        L.gate_up = cuda_matrix(weights_->fused(b + "ffn_gate_up.weight"), e.hidden, b + "ffn_gate_up.weight");
        for (int step = 0; step < num_steps; ++step) {
            const std::string out = folded_name(b + "attn_output.weight", step), down = folded_name(b + "ffn_down.weight", step);
            L.out_w.push_back(cuda_matrix(expert_constants_.find(out), int64_t{e.heads} * e.head_dim, out));
            L.down_w.push_back(cuda_matrix(expert_constants_.find(down), e.ffn, down));
        }
        L.attn_mod = f32(b + "attn_norm.mod", mods);
        L.attn_mod1 = f32(b + "attn_norm.mod" + kPlusOne, mods);
        L.ffn_mod = f32(b + "ffn_norm.mod", mods);
        L.ffn_mod1 = f32(b + "ffn_norm.mod" + kPlusOne, mods);
        L.cache_k = cache_.k[i]->data;
        L.cache_v = cache_.v[i]->data;
        s.layers.push_back(std::move(L));
    }
    s.out_mod = f32("action.output_norm.mod", mods);
    s.out_mod1 = f32(std::string("action.output_norm.mod") + kPlusOne, mods);
    s.action_in = cuda_matrix(weights_->get("action.action_in.weight"), hp_.action_dim, "action.action_in.weight");
    s.action_out = cuda_matrix(weights_->get("action.action_out.weight"), e.hidden, "action.action_out.weight");
    s.action_in_bias = f32("action.action_in.bias", e.hidden);
    s.action_out_bias = f32("action.action_out.bias", hp_.action_dim);
    return s;
}
#endif

std::vector<ggml_tensor*> Pi05Runtime::expert_masks(ggml_context* ctx, Graph& g, const std::vector<int>& n_prefix) const {
    std::vector<ggml_tensor*> masks;
    if (hp_.kv_pad <= 1) return masks;
    for (size_t s = 0; s < n_prefix.size(); ++s) {
        ggml_tensor* m = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, kv_span(n_prefix[s], hp_.horizon, hp_.kv_pad), hp_.horizon);
        ggml_set_input(m);
        g.io["mask" + std::to_string(s)] = m;
        masks.push_back(m);
    }
    return masks;
}

void Pi05Runtime::prepare_expert_masks(const std::vector<int>& n_prefix) {
    host_mask_.clear();
    if (hp_.kv_pad <= 1) return;
    const ggml_fp16_t open = ggml_fp32_to_fp16(0.0f), shut = ggml_fp32_to_fp16(-INFINITY);
    for (int n : n_prefix) {
        const int64_t span = kv_span(n, hp_.horizon, hp_.kv_pad), valid = n + hp_.horizon;
        const size_t first = host_mask_.size();
        host_mask_.resize(first + static_cast<size_t>(span) * hp_.horizon, shut);
        for (int j = 0; j < hp_.horizon; ++j)
            std::fill_n(host_mask_.begin() + first + static_cast<size_t>(j) * span, valid, open);
    }
}

void Pi05Runtime::set_expert_masks(Graph& g, size_t n_obs) {
    if (hp_.kv_pad <= 1) return;
    size_t first = 0;
    for (size_t s = 0; s < n_obs; ++s) {
        ggml_tensor* m = g.io.at("mask" + std::to_string(s));
        ggml_backend_tensor_set(m, host_mask_.data() + first, 0, ggml_nbytes(m));
        first += static_cast<size_t>(ggml_nelements(m));
    }
}

namespace {

// Runs of adjacent nodes with the ops `ops`, each node reading the one before it (any source): the
// node sequences ggml-CUDA fuses into one kernel.
int count_chains(const ggml_cgraph* gf, const std::vector<ggml_op>& ops) {
    if (!gf) return 0;
    ggml_cgraph* g = const_cast<ggml_cgraph*>(gf);
    const int n = ggml_graph_n_nodes(g), len = static_cast<int>(ops.size());
    int runs = 0;
    for (int i = 0; i + len <= n; ++i) {
        bool match = true;
        for (int j = 0; j < len && match; ++j) {
            const ggml_tensor* node = ggml_graph_node(g, i + j);
            match = node->op == ops[j];
            if (match && j > 0) {
                const ggml_tensor* prev = ggml_graph_node(g, i + j - 1);
                bool reads = false;
                for (const ggml_tensor* src : node->src) reads = reads || src == prev;
                match = reads;
            }
        }
        runs += match;
    }
    return runs;
}

}  // namespace

int Pi05Runtime::adjacent_norm_chains() const {
    return count_chains(chunk_expert_ ? chunk_.gf : expert_.gf, {GGML_OP_RMS_NORM, GGML_OP_MUL, GGML_OP_ADD});
}

int Pi05Runtime::adjacent_rope_set_rows() const {
    return count_chains(chunk_expert_ ? chunk_.gf : expert_.gf, {GGML_OP_ROPE, GGML_OP_VIEW, GGML_OP_SET_ROWS}) +
           count_chains(prefix_.gf, {GGML_OP_ROPE, GGML_OP_VIEW, GGML_OP_SET_ROWS});
}

void Pi05Runtime::time_embedding(int step, int num_steps, float* out) const {
    // Sinusoidal embedding of the flow time of `step` (t = 1 at step 0), periods log-spaced.
    const int half = hp_.expert.hidden / 2;
    const double time = 1.0 - static_cast<double>(step) / num_steps;
    for (int i = 0; i < half; ++i) {
        const double frac = half > 1 ? static_cast<double>(i) / (half - 1) : 0.0;
        const double period = hp_.time_min_period * std::pow(hp_.time_max_period / hp_.time_min_period, frac);
        const double angle = time * 2.0 * M_PI / period;
        out[i] = static_cast<float>(std::sin(angle));
        out[half + i] = static_cast<float>(std::cos(angle));
    }
}

void Pi05Runtime::embed_tokens(const int32_t* tokens, int n_tokens, float* out) const {
    // Only the rows of the prompt's tokens are dequantised, on the host, straight from the mapping.
    ggml_tensor* table = weights_->get("embed.weight");
    const uint8_t* base = weights_->host_data("embed.weight");
    const size_t row_bytes = ggml_row_size(table->type, table->ne[0]);
    const int64_t d = table->ne[0];
    const float scale = std::sqrt(static_cast<float>(hp_.llm.hidden));
    const auto* traits = ggml_get_type_traits(table->type);
    for (int i = 0; i < n_tokens; ++i) {
        const int32_t id = tokens[i];
        if (id < 0 || id >= table->ne[1]) {
            throw std::out_of_range("token id " + std::to_string(id) + " at position " + std::to_string(i) +
                                    " is outside the vocabulary [0, " + std::to_string(table->ne[1]) + ")");
        }
        float* dst = out + static_cast<size_t>(i) * d;
        const uint8_t* row = base + row_bytes * id;
        if (table->type == GGML_TYPE_F32) {
            std::memcpy(dst, row, d * sizeof(float));
        } else if (traits->to_float) {
            traits->to_float(row, dst, d);
        } else {
            throw std::runtime_error(std::string("embedding type ") + ggml_type_name(table->type) + " cannot be decoded");
        }
        for (int64_t j = 0; j < d; ++j) dst[j] *= scale;
    }
}

void Pi05Runtime::patchify(const float* image, float* dst) const {
    // (gy, gx) patches of an HWC image, each in the (channel, ky, kx) order of the patch kernel.
    const int S = hp_.image_size, P = hp_.patch, g = S / P;
    for (int gy = 0; gy < g; ++gy)
        for (int gx = 0; gx < g; ++gx)
            for (int c = 0; c < 3; ++c)
                for (int ky = 0; ky < P; ++ky)
                    for (int kx = 0; kx < P; ++kx) *dst++ = image[((gy * P + ky) * S + (gx * P + kx)) * 3 + c];
}

void Pi05Runtime::sample_actions(const float* images, int n_images, const int32_t* tokens, int n_tokens,
                                 const float* noise, int num_steps, float* actions, StageTimes* times) {
    sample_actions_batch({SampleInputs{images, n_images, tokens, n_tokens, noise}}, num_steps, actions, times);
}

void Pi05Runtime::sample_actions_batch(const std::vector<SampleInputs>& batch, int num_steps, float* actions,
                                       StageTimes* times) {
    const int N = hp_.num_patches(), S = hp_.image_size, P = hp_.patch, D = hp_.llm.hidden;
    if (batch.empty()) throw std::invalid_argument("need at least one observation");
    if (num_steps < 1) throw std::invalid_argument("num_steps must be >= 1, got " + std::to_string(num_steps));
    std::vector<int> n_prefix;
    int n_images = 0;
    for (size_t b = 0; b < batch.size(); ++b) {
        const SampleInputs& in = batch[b];
        const std::string which = batch.size() > 1 ? "observation " + std::to_string(b) + ": " : "";
        if (in.n_images < 1 || in.n_images > 3) {
            throw std::invalid_argument(which + "need 1 to 3 images, got " + std::to_string(in.n_images));
        }
        if (in.n_tokens < 1) throw std::invalid_argument(which + "need at least one prompt token");
        n_prefix.push_back(in.n_images * N + in.n_tokens);
        if (n_prefix.back() > max_prefix_) {
            throw std::invalid_argument(which + "prefix of " + std::to_string(n_prefix.back()) +
                                        " tokens exceeds the runtime limit " + std::to_string(max_prefix_));
        }
        n_images += in.n_images;
    }
    const int total_prefix = std::accumulate(n_prefix.begin(), n_prefix.end(), 0);
    const int B = static_cast<int>(batch.size()), H = hp_.horizon;
    // Row of host_prefix_ where each observation's block [image tokens | text tokens] starts.
    std::vector<size_t> block_first(B, 0);
    for (int b = 1; b < B; ++b) block_first[b] = block_first[b - 1] + n_prefix[b - 1];
    // Cache rows: observation b's prefix, then its chunk (see KvCache), kv_span rows each.
    const std::vector<int64_t> bases = cache_bases(n_prefix, H, hp_.kv_pad);
    if (bases.back() + kv_span(n_prefix.back(), H, hp_.kv_pad) > cache_tokens_)
        allocate_cache(static_cast<int>(kv_span(max_prefix_, H, hp_.kv_pad) * B));
    host_rows_.clear();
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < n_prefix[b]; ++j) host_rows_.push_back(bases[b] + j);
    const size_t prefix_rows = host_rows_.size();
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) host_rows_.push_back(bases[b] + n_prefix[b] + j);
    StageTimes local;
    StageTimes& t = times ? *times : local;
    t.clear();

    // Vision: every present camera of every observation in one graph call. Each observation's
    // prefix block is [its image tokens | its text tokens]; the blocks lie one after another.
    auto t0 = std::chrono::steady_clock::now();
    host_prefix_.resize(static_cast<size_t>(total_prefix) * D);
    const size_t patch_floats = static_cast<size_t>(P) * P * 3 * N, image_floats = static_cast<size_t>(S) * S * 3;
    host_patches_.resize(patch_floats * n_images);
    float* dst = host_patches_.data();
    for (const SampleInputs& in : batch) {
        for (int img = 0; img < in.n_images; ++img, dst += patch_floats) patchify(in.images + img * image_floats, dst);
    }
    // ggml's vision graph, each observation's image tokens into its block of host_prefix_
    auto ggml_vision = [&] {
        ensure_vision(n_images);
        ggml_backend_tensor_set(vision_.io["patches"], host_patches_.data(), 0, host_patches_.size() * sizeof(float));
        compute(vision_);
        const size_t image_bytes = static_cast<size_t>(N) * D * sizeof(float);
        size_t image_first = 0;
        for (int b = 0; b < B; ++b) {
            ggml_backend_tensor_get(vision_.io["out"], host_prefix_.data() + block_first[b] * D, image_first * image_bytes,
                                    batch[b].n_images * image_bytes);
            image_first += batch[b].n_images;
        }
    };
    // Our vision loop, each image's tokens into its observation's block of `blocks` (host or device
    // floats laid out as host_prefix_); false where it failed and ggml's graph has the stage from then on.
    auto cuda_vision_into = [&](float* blocks) {
#ifdef VLA_EDGE_WITH_CUDA
        std::vector<float*> image_out;  // each image's tokens straight into its observation's block
        for (int b = 0; b < B; ++b) {
            for (int img = 0; img < batch[b].n_images; ++img)
                image_out.push_back(blocks + (block_first[b] + static_cast<size_t>(img) * N) * D);
        }
        return run_or_hand_over(cuda_vision_, cuda_vision_wanted_, cuda_vision_note_, "CUDA vision loop",
                                [&] { cuda_vision_->run(host_patches_.data(), n_images, image_out); }, cuda_clear_last_error);
#else
        (void)blocks;
        return false;
#endif
    };
    // With both of our loops the image tokens go from the vision loop straight into the prefix loop's
    // input rows on the device; only the text rows are uploaded from the host then.
    float* device_prefix = nullptr;
    bool vision_done = false;
    if (use_cuda_vision()) {
#ifdef VLA_EDGE_WITH_CUDA
        if (use_cuda_prefix()) device_prefix = cuda_prefix_->input_rows(n_prefix);
#endif
        vision_done = cuda_vision_into(device_prefix ? device_prefix : host_prefix_.data());
        if (!vision_done) device_prefix = nullptr;  // ggml's graph writes the image tokens on the host
    }
    if (!vision_done) ggml_vision();
    t.emplace_back("vision", ms_since(t0));

    // Prefix: image tokens + scaled text embeddings through the LLM once; K/V stay in the cache.
    // Positions restart at 0 for every observation.
    t0 = std::chrono::steady_clock::now();
    const int A = hp_.action_dim, E = hp_.expert.hidden;
    host_pos_.resize(std::max(total_prefix, H * B));
    for (int b = 0; b < B; ++b) {
        const size_t text_first = block_first[b] + static_cast<size_t>(batch[b].n_images) * N;
        embed_tokens(batch[b].tokens, batch[b].n_tokens, host_prefix_.data() + text_first * D);
        std::iota(host_pos_.begin() + block_first[b], host_pos_.begin() + block_first[b] + n_prefix[b], 0);
    }
    bool prefix_done = false;
    if (use_cuda_prefix()) {
#ifdef VLA_EDGE_WITH_CUDA
        std::vector<std::pair<int, int>> text_rows;  // empty: every row from the host
        if (device_prefix) {
            for (int b = 0; b < B; ++b)
                text_rows.emplace_back(static_cast<int>(block_first[b]) + batch[b].n_images * N, batch[b].n_tokens);
        }
        prefix_done = run_or_hand_over(cuda_prefix_, cuda_prefix_wanted_, cuda_prefix_note_, "CUDA prefix loop",
                                       [&] { cuda_prefix_->run(host_prefix_.data(), n_prefix, bases, text_rows); },
                                       cuda_clear_last_error);
        // the image tokens were only in the dropped loop's input rows: the vision stage again, onto the host
        if (!prefix_done && device_prefix && !(use_cuda_vision() && cuda_vision_into(host_prefix_.data()))) ggml_vision();
#endif
    }
    if (!prefix_done) {
        ensure_prefix(n_prefix);
        ggml_backend_tensor_set(prefix_.io["emb"], host_prefix_.data(), 0, host_prefix_.size() * sizeof(float));
        ggml_backend_tensor_set(prefix_.io["pos"], host_pos_.data(), 0, total_prefix * sizeof(int32_t));
        ggml_backend_tensor_set(prefix_.io["rows"], host_rows_.data(), 0, prefix_rows * sizeof(int64_t));
        compute(prefix_);
    }
    t.emplace_back("prefix", ms_since(t0));

    // Flow matching: Euler from t = 1 (noise) to t = 0; chunk positions follow each own prefix.
    host_x_.resize(static_cast<size_t>(B) * H * A);
    auto load_noise = [&] {
        for (int b = 0; b < B; ++b)
            std::memcpy(host_x_.data() + static_cast<size_t>(b) * H * A, batch[b].noise, sizeof(float) * H * A);
    };
    load_noise();
    for (int b = 0; b < B; ++b) std::iota(host_pos_.begin() + b * H, host_pos_.begin() + (b + 1) * H, n_prefix[b]);
    host_time_.resize(static_cast<size_t>(E) * num_steps);
    for (int step = 0; step < num_steps; ++step) time_embedding(step, num_steps, host_time_.data() + static_cast<size_t>(step) * E);
    const auto expert_start = std::chrono::steady_clock::now();
    prepare_expert_masks(n_prefix);
    bool expert_done = false;
    if (chunk_expert_ && use_cuda_expert(num_steps)) {
#ifdef VLA_EDGE_WITH_CUDA
        expert_done = run_or_hand_over(cuda_expert_, cuda_expert_wanted_, cuda_expert_note_, "CUDA expert loop",
                                       [&] { cuda_expert_->run(n_prefix, bases, host_x_.data()); }, cuda_clear_last_error);
        if (!expert_done) load_noise();  // a failed run may have left part of its chunk in host_x_
#endif
    }
    if (!expert_done) {
        if (chunk_expert_) {
            run_expert_chunk_graph(n_prefix, num_steps, prefix_rows);
        } else {
            run_expert_step_graphs(n_prefix, num_steps, prefix_rows, t);
        }
    }
    t.emplace_back("expert_total", ms_since(expert_start));
    std::memcpy(actions, host_x_.data(), host_x_.size() * sizeof(float));
}

// Every flow step in one ggml graph: the inputs once, the final x back once.
void Pi05Runtime::run_expert_chunk_graph(const std::vector<int>& n_prefix, int num_steps, size_t prefix_rows) {
    const int H = hp_.horizon, B = static_cast<int>(n_prefix.size());
    ensure_expert_chunk(n_prefix, num_steps);
    ggml_backend_tensor_set(chunk_.io["pos"], host_pos_.data(), 0, H * B * sizeof(int32_t));
    ggml_backend_tensor_set(chunk_.io["rows"], host_rows_.data() + prefix_rows, 0, H * B * sizeof(int64_t));
    ggml_backend_tensor_set(chunk_.io["x"], host_x_.data(), 0, host_x_.size() * sizeof(float));
    if (chunk_.io.count("t")) ggml_backend_tensor_set(chunk_.io["t"], host_time_.data(), 0, host_time_.size() * sizeof(float));
    set_expert_masks(chunk_, n_prefix.size());
    compute(chunk_);
    ggml_backend_tensor_get(chunk_.io["out"], host_x_.data(), 0, host_x_.size() * sizeof(float));
}

// One ggml graph reused for every flow step, x updated on the host.
void Pi05Runtime::run_expert_step_graphs(const std::vector<int>& n_prefix, int num_steps, size_t prefix_rows,
                                         StageTimes& t) {
    const int H = hp_.horizon, B = static_cast<int>(n_prefix.size()), E = hp_.expert.hidden;
    ensure_expert(n_prefix);
    host_v_.resize(host_x_.size());
    const float dt = -1.0f / static_cast<float>(num_steps);
    for (int step = 0; step < num_steps; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        // every input again each step: the allocator may reuse an input's memory once its last
        // reader has run (it did for `rows` once the node order changed), so none outlives a compute
        ggml_backend_tensor_set(expert_.io["pos"], host_pos_.data(), 0, H * B * sizeof(int32_t));
        ggml_backend_tensor_set(expert_.io["rows"], host_rows_.data() + prefix_rows, 0, H * B * sizeof(int64_t));
        ggml_backend_tensor_set(expert_.io["x"], host_x_.data(), 0, host_x_.size() * sizeof(float));
        ggml_backend_tensor_set(expert_.io["t"], host_time_.data() + static_cast<size_t>(step) * E, 0, E * sizeof(float));
        set_expert_masks(expert_, n_prefix.size());
        compute(expert_);
        ggml_backend_tensor_get(expert_.io["v"], host_v_.data(), 0, host_v_.size() * sizeof(float));
        for (size_t i = 0; i < host_x_.size(); ++i) host_x_[i] += dt * host_v_[i];
        t.emplace_back("expert_step_" + std::to_string(step), ms_since(t0));
    }
}

}  // namespace vla_edge
