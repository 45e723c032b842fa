#include "pi05_graph.h"

#include "gelu_kernels.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <stdexcept>

namespace vla_edge {

namespace {

// ---- hyper-parameters and tensor checks -------------------------------------------------------

const std::set<ggml_type> kMatrixTypes = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0,
                                          GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
                                          GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                                          GGML_TYPE_Q6_K};

int64_t pad256(int64_t n) { return (n + 255) / 256 * 256; }

// shape in numpy order [out, in]; `pad_in` allows the input dim stored padded to a 256 multiple.
void expect(const GgufWeights& w, const std::string& name, std::vector<int64_t> shape, bool pad_in = false) {
    ggml_tensor* t = w.get(name);
    const int nd = static_cast<int>(shape.size());
    std::string want, got;
    bool ok = ggml_n_dims(t) <= nd;
    for (int i = 0; i < nd; ++i) {
        const int64_t expected = shape[nd - 1 - i];  // ggml ne is reversed
        const int64_t have = t->ne[i];
        const bool padded = pad_in && i == 0 && have == pad256(expected);
        ok = ok && (have == expected || padded);
    }
    for (int i = nd; i < GGML_MAX_DIMS; ++i) ok = ok && t->ne[i] == 1;
    if (!ok) {
        for (int i = nd - 1; i >= 0; --i) want += (want.empty() ? "" : ", ") + std::to_string(shape[nd - 1 - i]);
        for (int i = ggml_n_dims(t) - 1; i >= 0; --i) got += (got.empty() ? "" : ", ") + std::to_string(t->ne[i]);
        throw std::runtime_error(w.path() + ": tensor '" + name + "' has shape [" + got + "], expected [" + want + "]");
    }
    const bool vector = nd == 1;
    if (vector ? t->type != GGML_TYPE_F32 : kMatrixTypes.count(t->type) == 0) {
        throw std::runtime_error(w.path() + ": tensor '" + name + "' has unsupported type " + ggml_type_name(t->type) +
                                 (vector ? " (norms and biases must be F32)" : ""));
    }
}

void check_tensors(const GgufWeights& w, const Pi05Hparams& hp) {
    const int64_t H = hp.v_hidden, P = hp.patch;
    expect(w, "v.patch_embd.weight", {H, 3, P, P});
    expect(w, "v.patch_embd.bias", {H});
    expect(w, "v.position_embd.weight", {hp.num_patches(), H});
    for (int i = 0; i < hp.v_layers; ++i) {
        const std::string b = "v.blk." + std::to_string(i) + ".";
        for (const char* p : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
            expect(w, b + p + ".weight", {H, H}, true);
            expect(w, b + p + ".bias", {H});
        }
        for (const char* p : {"ln1", "ln2"}) {
            expect(w, b + p + ".weight", {H});
            expect(w, b + p + ".bias", {H});
        }
        expect(w, b + "ffn_up.weight", {hp.v_ffn_stored, H}, true);
        expect(w, b + "ffn_up.bias", {hp.v_ffn_stored});
        expect(w, b + "ffn_down.weight", {H, hp.v_ffn_stored}, true);
        expect(w, b + "ffn_down.bias", {H});
    }
    expect(w, "v.post_ln.weight", {H});
    expect(w, "v.post_ln.bias", {H});
    const auto& m = hp.llm;
    expect(w, "mm.0.weight", {m.hidden, H});
    expect(w, "mm.0.bias", {m.hidden});
    expect(w, "embed.weight", {hp.vocab, m.hidden});
    const int64_t q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim;
    for (int i = 0; i < m.layers; ++i) {
        const std::string b = "pali.blk." + std::to_string(i) + ".";
        expect(w, b + "attn_norm.weight", {m.hidden});
        expect(w, b + "attn_q.weight", {q, m.hidden}, true);
        expect(w, b + "attn_k.weight", {kv, m.hidden}, true);
        expect(w, b + "attn_v.weight", {kv, m.hidden}, true);
        expect(w, b + "attn_o.weight", {m.hidden, q}, true);
        expect(w, b + "ffn_norm.weight", {m.hidden});
        expect(w, b + "ffn_gate.weight", {m.ffn, m.hidden}, true);
        expect(w, b + "ffn_up.weight", {m.ffn, m.hidden}, true);
        expect(w, b + "ffn_down.weight", {m.hidden, m.ffn}, true);
    }
    const auto& e = hp.expert;
    const int64_t E = e.hidden, A = hp.action_dim;
    expect(w, "action.action_in.weight", {E, A});
    expect(w, "action.action_in.bias", {E});
    expect(w, "action.action_out.weight", {A, E});
    expect(w, "action.action_out.bias", {A});
    for (const char* p : {"action.timestep_mlp.in", "action.timestep_mlp.out"}) {
        expect(w, std::string(p) + ".weight", {E, E});
        expect(w, std::string(p) + ".bias", {E});
    }
    expect(w, "action.output_norm.weight", {3 * E, E});
    expect(w, "action.output_norm.bias", {3 * E});
    const int64_t eq = e.heads * e.head_dim, ekv = e.kv_heads * e.head_dim;
    for (int i = 0; i < e.layers; ++i) {
        const std::string b = "action.blk." + std::to_string(i) + ".";
        expect(w, b + "attn_q.weight", {eq, E}, true);
        expect(w, b + "attn_k.weight", {ekv, E}, true);
        expect(w, b + "attn_v.weight", {ekv, E}, true);
        expect(w, b + "attn_output.weight", {E, eq}, true);
        for (const char* p : {"attn_norm", "ffn_norm"}) {
            expect(w, b + p + ".weight", {3 * E, E});
            expect(w, b + p + ".bias", {3 * E});
        }
        expect(w, b + "ffn_gate.weight", {e.ffn, E}, true);
        expect(w, b + "ffn_up.weight", {e.ffn, E}, true);
        expect(w, b + "ffn_down.weight", {E, e.ffn}, true);
    }
}

// ---- graph helpers ----------------------------------------------------------------------------

ggml_tensor* linear(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b = nullptr) {
    if (w->ne[0] > x->ne[0]) x = ggml_pad(ctx, x, static_cast<int>(w->ne[0] - x->ne[0]), 0, 0, 0);
    ggml_tensor* y = ggml_mul_mat(ctx, w, x);
    return b ? ggml_add(ctx, y, b) : y;
}

// GELU with the tanh approximation, computed in float32. ggml_gelu uses an fp16 lookup table on
// the CPU, which is ~1e-3 off and would break agreement with the float32 reference; ggml's tanh
// is libm's scalar tanhf. On the CPU one fused custom op per tensor runs the vectorised kernels
// of gelu_kernels.cpp instead; other backends run ggml's GELU / GeGLU ops, which compute tanh in
// float32 there (CUDA: tanhf), or the element-wise chain when asked (unfused_ops, for A/B runs).

// This thread's share [begin, end) of n elements: contiguous blocks, one per thread.
inline void thread_block(int64_t n, int ith, int nth, int64_t& begin, int64_t& end) {
    const int64_t per = (n + nth - 1) / nth;
    begin = std::min(n, per * ith);
    end = std::min(n, begin + per);
}

void gelu_op(ggml_tensor* dst, const ggml_tensor* a, int ith, int nth, void*) {
    GGML_ASSERT(ggml_is_contiguous(a) && ggml_is_contiguous(dst) && a->type == GGML_TYPE_F32);
    int64_t begin, end;
    thread_block(ggml_nelements(dst), ith, nth, begin, end);
    gelu_tanh_f32(static_cast<const float*>(a->data) + begin, static_cast<float*>(dst->data) + begin, end - begin);
}

void geglu_op(ggml_tensor* dst, const ggml_tensor* gate, const ggml_tensor* up, int ith, int nth, void*) {
    GGML_ASSERT(ggml_is_contiguous(gate) && ggml_is_contiguous(up) && ggml_is_contiguous(dst));
    GGML_ASSERT(gate->type == GGML_TYPE_F32 && up->type == GGML_TYPE_F32 && ggml_are_same_shape(gate, up));
    int64_t begin, end;
    thread_block(ggml_nelements(dst), ith, nth, begin, end);
    geglu_f32(static_cast<const float*>(gate->data) + begin, static_cast<const float*>(up->data) + begin,
              static_cast<float*>(dst->data) + begin, end - begin);
}

ggml_tensor* gelu_tanh(ggml_context* ctx, ggml_tensor* x, const Pi05Hparams& hp) {
    if (hp.fused_cpu_ops) return ggml_map_custom1(ctx, x, gelu_op, GGML_N_TASKS_MAX, nullptr);
    if (hp.backend_gelu_ops) return ggml_gelu(ctx, x);
    const float k = std::sqrt(2.0f / static_cast<float>(M_PI));
    ggml_tensor* x3 = ggml_mul(ctx, ggml_sqr(ctx, x), x);
    ggml_tensor* inner = ggml_scale(ctx, ggml_add(ctx, x, ggml_scale(ctx, x3, 0.044715f)), k);
    return ggml_mul(ctx, x, ggml_scale_bias(ctx, ggml_tanh(ctx, inner), 0.5f, 0.5f));
}

ggml_tensor* layer_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, ggml_tensor* b, float eps) {
    return ggml_add(ctx, ggml_mul(ctx, ggml_norm(ctx, x, eps), w), b);
}

// Gemma stores RMSNorm weights as deltas from one: y = rms(x) * (1 + w) = rms(x) + rms(x) * w.
// With the constant 1 + w (GEMMA_PLUS_ONE) one multiply, which ggml-CUDA fuses into the norm's
// kernel; without it three kernels (the norm's output has two readers, so nothing fuses).
ggml_tensor* gemma_rms_norm(ggml_context* ctx, ggml_tensor* x, ggml_tensor* w, float eps, const ConstantTensors* constants) {
    ggml_tensor* n = ggml_rms_norm(ctx, x, eps);
    if (ggml_tensor* w1 = constants ? constants->find(std::string(ggml_get_name(w)) + kPlusOne) : nullptr) {
        return ggml_mul(ctx, n, w1);
    }
    return ggml_add(ctx, n, ggml_mul(ctx, n, w));
}

// pi0.5 adaptive RMSNorm with step `step`'s modulation (see ExpertConditioning); returns the
// normalised x and the gate. The modulation views enter the graph here, before the norm: left to
// the final expansion they would sit between rms_norm, mul and add, and ggml-CUDA fuses those three
// into one kernel only when they are adjacent nodes (found in the 2026-12-05 kernel profile: ~9,600
// kernels per chunk, a quarter of them element-wise).
ggml_tensor* ada_rms_norm(ggml_context* ctx, ggml_cgraph* gf, ggml_tensor* x, const AdaModulation& mod, int step,
                          float eps, ggml_tensor** gate) {
    const int64_t E = x->ne[0];
    const size_t f = ggml_element_size(mod.mod), column = step * mod.mod->nb[1];
    ggml_tensor* scale1 = ggml_view_1d(ctx, mod.mod_plus_one, E, column);
    ggml_tensor* shift = ggml_view_1d(ctx, mod.mod, E, column + E * f);
    *gate = ggml_view_1d(ctx, mod.mod, E, column + 2 * E * f);
    for (ggml_tensor* view : {scale1, shift, *gate}) ggml_build_forward_expand(gf, view);
    return ggml_add(ctx, ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), scale1), shift);
}

ggml_tensor* rope(ggml_context* ctx, ggml_tensor* x, ggml_tensor* pos, int head_dim, float theta) {
    return ggml_rope_ext(ctx, x, pos, nullptr, head_dim, GGML_ROPE_TYPE_NEOX, 0, theta, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
}

// Unmasked softmax attention; K/V heads are shared by groups of query heads through ggml's
// broadcasting matmul (no copies). q [d, heads, n], k/v [d, kv_heads, nk] -> [d*heads, n].
// n_seq > 1: the tokens are n_seq independent sequences of equal length, one after another
// (the cameras in one vision call); each attends only within itself.
// flash: the backend to run flash attention on (nullptr: the matmul form).
// mask: F16 [nk, n] added to the scores (0 or -inf), or nullptr.
ggml_tensor* attention(ggml_context* ctx, ggml_backend_t flash, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v,
                       int64_t n_seq = 1, ggml_tensor* mask = nullptr) {
    const int64_t d = q->ne[0], heads = q->ne[1], n = q->ne[2] / n_seq;
    if (n_seq > 1) {  // views, not reshapes: q/k/v may be strided views of one fused product
        auto split = [&](ggml_tensor* t) {
            const int64_t len = t->ne[2] / n_seq;
            return ggml_view_4d(ctx, t, d, t->ne[1], len, n_seq, t->nb[1], t->nb[2], len * t->nb[2], 0);
        };
        q = split(q);
        k = split(k);
        v = split(v);
    }
    ggml_tensor* qp = ggml_permute(ctx, q, 0, 2, 1, 3);                  // [d, n, heads]
    ggml_tensor* kp = ggml_permute(ctx, k, 0, 2, 1, 3);                  // [d, nk, kv]
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    if (flash) {
        ggml_tensor* vp = ggml_permute(ctx, v, 0, 2, 1, 3);              // [d, nk, kv], not transposed
        ggml_tensor* fa = ggml_flash_attn_ext(ctx, qp, kp, vp, mask, scale, 0.0f, 0.0f);  // [d, heads, n]
        ggml_prec_set_acc(fa, GGML_PREC_F32);
        if (ggml_backend_supports_op(flash, fa)) return ggml_reshape_2d(ctx, fa, d * heads, n * n_seq);
    }
    ggml_tensor* kq = ggml_mul_mat(ctx, kp, qp);                         // [nk, n, heads]
    kq = ggml_soft_max_ext(ctx, kq, mask, scale, 0.0f);
    ggml_tensor* vt = ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3));  // [nk, d, kv]
    ggml_tensor* out = ggml_mul_mat(ctx, vt, kq);                        // [d, n, heads]
    out = ggml_permute(ctx, out, 0, 2, 1, 3);                            // [d, heads, n]
    return ggml_cont_2d(ctx, out, d * heads, n * n_seq);
}

// Tokens [first, first + count) of a [d, heads, tokens] tensor: one observation's tokens in a batch
// whose observations lie one after another (the whole tensor when there is only one).
ggml_tensor* token_rows(ggml_context* ctx, ggml_tensor* t, int64_t first, int64_t count) {
    if (first == 0 && count == t->ne[2]) return t;
    return ggml_view_3d(ctx, t, t->ne[0], t->ne[1], count, t->nb[1], t->nb[2], first * t->nb[2]);
}

// The per-observation attention outputs [d*heads, n_b], one after another again.
ggml_tensor* concat_tokens(ggml_context* ctx, const std::vector<ggml_tensor*>& parts) {
    ggml_tensor* out = parts[0];
    for (size_t i = 1; i < parts.size(); ++i) out = ggml_concat(ctx, out, parts[i], 1);
    return out;
}

// Attention projections of one layer: q [d, heads, n], k and v [d, kv_heads, n]. With the
// layer's fused [q; k; v] matrix (GPU weights, GgufWeights::fused) one product and three views.
struct Projections {
    ggml_tensor *q, *k, *v;
};

Projections project_qkv(ggml_context* ctx, const GgufWeights& w, const std::string& b, ggml_tensor* h,
                        const StackHparams& s) {
    const int64_t n = h->ne[1], d = s.head_dim;
    if (ggml_tensor* fused = w.fused(b + "attn_qkv.weight")) {
        ggml_tensor* y = linear(ctx, h, fused);  // [d * (heads + 2 kv), n]
        const size_t f = ggml_element_size(y);
        auto part = [&](int64_t heads, int64_t first_head) {
            return ggml_view_3d(ctx, y, d, heads, n, d * f, y->nb[1], first_head * d * f);
        };
        return {part(s.heads, 0), part(s.kv_heads, s.heads), part(s.kv_heads, s.heads + s.kv_heads)};
    }
    auto one = [&](const char* name, int64_t heads) {
        return ggml_reshape_3d(ctx, linear(ctx, h, w.get(b + name)), d, heads, n);
    };
    return {one("attn_q.weight", s.heads), one("attn_k.weight", s.kv_heads), one("attn_v.weight", s.kv_heads)};
}

// [d, heads, n] -> [d * heads, n] rows for the KV cache, without a copy. Always a view (never a
// reshape): ggml-CUDA runs ROPE -> VIEW -> SET_ROWS as one kernel, the rotated keys written straight
// into the cache, and does not match a RESHAPE in that chain.
ggml_tensor* token_matrix(ggml_context* ctx, ggml_tensor* t) {
    return ggml_view_2d(ctx, t, t->ne[0] * t->ne[1], t->ne[2], t->nb[2], 0);
}

// Cache rows [first, first + count) of one layer's K or V cache as [head_dim, kv_heads, count]; `c`
// is the cache as set_rows returned it, so every read is ordered after the write.
ggml_tensor* cache_range(ggml_context* ctx, ggml_tensor* c, const StackHparams& s, int64_t first, int64_t count) {
    return ggml_view_3d(ctx, c, s.head_dim, s.kv_heads, count, s.head_dim * ggml_element_size(c), c->nb[1],
                        first * c->nb[1]);
}

// down: the down projection to use in place of the layer's own (a folded copy), or nullptr.
ggml_tensor* geglu(ggml_context* ctx, ggml_tensor* h, const GgufWeights& w, const std::string& b,
                   const Pi05Hparams& hp, ggml_tensor* down = nullptr) {
    if (!down) down = w.get(b + "ffn_down.weight");
    ggml_tensor* fused = hp.backend_gelu_ops ? w.fused(b + "ffn_gate_up.weight") : nullptr;
    if (fused) return linear(ctx, ggml_geglu(ctx, linear(ctx, h, fused)), down);  // gelu(gate) * up
    ggml_tensor* gate = linear(ctx, h, w.get(b + "ffn_gate.weight"));
    ggml_tensor* up = linear(ctx, h, w.get(b + "ffn_up.weight"));
    ggml_tensor* gated = hp.fused_cpu_ops      ? ggml_map_custom2(ctx, gate, up, geglu_op, GGML_N_TASKS_MAX, nullptr)
                         : hp.backend_gelu_ops ? ggml_geglu_split(ctx, gate, up)
                                               : ggml_mul(ctx, gelu_tanh(ctx, gate, hp), up);
    return linear(ctx, gated, down);
}

// The LLM and the action expert name their attention keys the same way under different prefixes.
void read_attention_keys(const GgufWeights& w, const std::string& prefix, StackHparams& s) {
    auto key = [&](const char* suffix) { return prefix + suffix; };
    s.layers = w.u32(key("block_count").c_str(), s.layers);
    s.heads = w.u32(key("attention.head_count").c_str(), s.heads);
    s.kv_heads = w.u32(key("attention.head_count_kv").c_str(), s.kv_heads);
    s.head_dim = w.u32(key("attention.head_dim").c_str(), s.head_dim);
    s.eps = w.f32(key("attention.layer_norm_rms_epsilon").c_str(), s.eps);
}

}  // namespace

int64_t kv_span(int n_prefix, int horizon, int kv_pad) {
    const int64_t rows = static_cast<int64_t>(n_prefix) + horizon;
    return (rows + kv_pad - 1) / kv_pad * kv_pad;
}

std::vector<int64_t> cache_bases(const std::vector<int>& n_prefix, int horizon, int kv_pad) {
    std::vector<int64_t> bases;
    int64_t next = 0;
    for (int n : n_prefix) {
        bases.push_back(next);
        next += kv_span(n, horizon, kv_pad);
    }
    return bases;
}

Pi05Hparams Pi05Hparams::from_weights(const GgufWeights& w) {
    Pi05Hparams hp;
    const std::string arch = w.str("general.architecture", "");
    if (arch != "pi05") {
        throw std::runtime_error(w.path() + ": model family is '" + arch + "', this runtime executes 'pi05'");
    }
    hp.v_hidden = w.u32("clip.vision.embedding_length", hp.v_hidden);
    hp.v_heads = w.u32("clip.vision.attention.head_count", hp.v_heads);
    hp.v_layers = w.u32("clip.vision.block_count", hp.v_layers);
    hp.image_size = w.u32("clip.vision.image_size", hp.image_size);
    hp.patch = w.u32("clip.vision.patch_size", hp.patch);
    hp.v_eps = w.f32("clip.vision.attention.layer_norm_epsilon", hp.v_eps);
    if (ggml_tensor* up = w.find("v.blk.0.ffn_up.weight")) hp.v_ffn_stored = static_cast<int>(up->ne[1]);
    hp.vocab = w.u32("embed.vocab_size", hp.vocab);
    auto& m = hp.llm;
    m.hidden = w.u32("embed.hidden_size", m.hidden);
    // Released files carry no pi05.llm.* keys (ActQuant's C++ compiles Gemma-2B in): start from
    // what the tensors say (head_dim is shared with the expert); keys, where present, override.
    int n_llm = 0;
    while (w.find("pali.blk." + std::to_string(n_llm) + ".attn_q.weight")) ++n_llm;
    if (n_llm > 0) m.layers = n_llm;
    m.head_dim = w.u32("pi05_action.attention.head_dim", m.head_dim);
    if (ggml_tensor* q = w.find("pali.blk.0.attn_q.weight")) m.heads = static_cast<int>(q->ne[1] / m.head_dim);
    if (ggml_tensor* k = w.find("pali.blk.0.attn_k.weight")) m.kv_heads = static_cast<int>(k->ne[1] / m.head_dim);
    if (ggml_tensor* g = w.find("pali.blk.0.ffn_gate.weight")) m.ffn = static_cast<int>(g->ne[1]);
    m.ffn = w.u32("pi05.llm.feed_forward_length", m.ffn);
    read_attention_keys(w, "pi05.llm.", m);
    hp.rope_theta = w.f32("pi05.llm.rope.freq_base", hp.rope_theta);
    auto& e = hp.expert;
    e.hidden = w.u32("pi05_action.hidden_size", e.hidden);
    e.ffn = w.u32("pi05_action.intermediate_size", e.ffn);
    read_attention_keys(w, "pi05_action.", e);
    hp.action_dim = w.u32("pi05_action.action_dim", hp.action_dim);
    hp.horizon = w.u32("pi05_action.action_horizon", hp.horizon);
    if (e.layers != m.layers || e.head_dim != m.head_dim || e.kv_heads != m.kv_heads) {
        throw std::runtime_error(w.path() + ": action expert and LLM must share layers, head_dim and kv heads");
    }
    if (hp.v_heads <= 0 || hp.v_hidden % hp.v_heads || hp.image_size % hp.patch || e.hidden % 2) {
        throw std::runtime_error(w.path() + ": inconsistent vision/expert hyper-parameters in metadata");
    }
    check_tensors(w, hp);
    return hp;
}

ggml_tensor* build_vision(ggml_context* ctx, const GgufWeights& w, const Pi05Hparams& hp, ggml_tensor* patches) {
    // patches: [patch pixels, n_images * N], cameras one after another; every product runs on all
    // cameras' tokens at once, attention stays within each camera.
    const int64_t H = hp.v_hidden, n_img = patches->ne[1] / hp.num_patches(), N = patches->ne[1],
                  hd = H / hp.v_heads;
    ggml_tensor* kernel = w.get("v.patch_embd.weight");
    // the (kx, ky, channel) patch layout of the host-side patchify equals the kernel's memory order
    ggml_tensor* k2d = ggml_reshape_2d(ctx, kernel, hp.patch * hp.patch * 3, H);
    if (kernel->type != GGML_TYPE_F32) k2d = ggml_cast(ctx, k2d, GGML_TYPE_F32);
    ggml_tensor* x = ggml_add(ctx, ggml_mul_mat(ctx, k2d, patches), w.get("v.patch_embd.bias"));
    x = ggml_add(ctx, x, ggml_cast(ctx, w.get("v.position_embd.weight"), GGML_TYPE_F32));
    for (int i = 0; i < hp.v_layers; ++i) {
        const std::string b = "v.blk." + std::to_string(i) + ".";
        ggml_tensor* h = layer_norm(ctx, x, w.get(b + "ln1.weight"), w.get(b + "ln1.bias"), hp.v_eps);
        // q, k and v read the same input: where all three store the same zero-padded input width
        // (K-quant alignment), h is padded once instead of once per product (two kernels fewer per
        // layer); a recipe that stores them differently keeps the padding per product (linear)
        const int64_t stored_in = w.get(b + "attn_q.weight")->ne[0];
        if (stored_in > h->ne[0] && w.get(b + "attn_k.weight")->ne[0] == stored_in &&
            w.get(b + "attn_v.weight")->ne[0] == stored_in) {
            h = ggml_pad(ctx, h, static_cast<int>(stored_in - h->ne[0]), 0, 0, 0);
        }
        ggml_tensor* a = nullptr;
        ggml_tensor* fused = w.fused(b + "attn_qkv.weight");
        ggml_tensor* fused_bias = w.fused(b + "attn_qkv.bias");
        if (fused && fused_bias) {  // one product and one bias add for q, k and v (GPU weights)
            ggml_tensor* y = linear(ctx, h, fused, ggml_reshape_1d(ctx, fused_bias, ggml_nelements(fused_bias)));
            const size_t f = ggml_element_size(y);
            auto part = [&](int64_t which) {
                return ggml_view_3d(ctx, y, hd, hp.v_heads, N, hd * f, y->nb[1], which * H * f);
            };
            a = attention(ctx, hp.flash_vision, part(0), part(1), part(2), n_img);
        } else {
            auto proj = [&](const char* p) {
                ggml_tensor* y = linear(ctx, h, w.get(b + p + ".weight"), w.get(b + p + ".bias"));
                return ggml_reshape_3d(ctx, y, hd, hp.v_heads, N);
            };
            a = attention(ctx, hp.flash_vision, proj("attn_q"), proj("attn_k"), proj("attn_v"), n_img);
        }
        x = ggml_add(ctx, x, linear(ctx, a, w.get(b + "attn_out.weight"), w.get(b + "attn_out.bias")));
        h = layer_norm(ctx, x, w.get(b + "ln2.weight"), w.get(b + "ln2.bias"), hp.v_eps);
        h = gelu_tanh(ctx, linear(ctx, h, w.get(b + "ffn_up.weight"), w.get(b + "ffn_up.bias")), hp);
        x = ggml_add(ctx, x, linear(ctx, h, w.get(b + "ffn_down.weight"), w.get(b + "ffn_down.bias")));
    }
    x = layer_norm(ctx, x, w.get("v.post_ln.weight"), w.get("v.post_ln.bias"), hp.v_eps);
    return linear(ctx, x, w.get("mm.0.weight"), w.get("mm.0.bias"));
}

void build_prefix(ggml_context* ctx, ggml_cgraph* gf, const GgufWeights& w, const Pi05Hparams& hp,
                  ggml_tensor* embeddings, ggml_tensor* positions, ggml_tensor* rows, const KvCache& cache,
                  const std::vector<int>& lengths, const ConstantTensors* constants) {
    const auto& m = hp.llm;
    const std::vector<int64_t> bases = cache_bases(lengths, hp.horizon, hp.kv_pad);
    ggml_tensor* x = embeddings;
    for (int i = 0; i < m.layers; ++i) {
        const std::string b = "pali.blk." + std::to_string(i) + ".";
        ggml_tensor* h = gemma_rms_norm(ctx, x, w.get(b + "attn_norm.weight"), m.eps, constants);
        auto [q, k, v] = project_qkv(ctx, w, b, h, m);
        q = rope(ctx, q, positions, m.head_dim, hp.rope_theta);
        k = rope(ctx, k, positions, m.head_dim, hp.rope_theta);
        // Attention reads K/V back from the cache it just wrote (views of set_rows' results): the
        // rotated keys then have no reader but the cache write, which ggml-CUDA fuses into the rope.
        ggml_tensor* keys_all = ggml_set_rows(ctx, cache.k[i], token_matrix(ctx, k), rows);
        ggml_tensor* values_all = ggml_set_rows(ctx, cache.v[i], token_matrix(ctx, v), rows);
        ggml_build_forward_expand(gf, keys_all);
        ggml_build_forward_expand(gf, values_all);
        if (i == m.layers - 1) break;  // only K/V are consumed downstream: the last block's rest is waste
        std::vector<ggml_tensor*> parts;  // each observation attends to its own prefix only
        int64_t first = 0;
        for (size_t s = 0; s < lengths.size(); ++s) {
            const int len = lengths[s];
            parts.push_back(attention(ctx, hp.flash_text, token_rows(ctx, q, first, len),
                                      cache_range(ctx, keys_all, m, bases[s], len),
                                      cache_range(ctx, values_all, m, bases[s], len)));
            first += len;
        }
        x = ggml_add(ctx, x, linear(ctx, concat_tokens(ctx, parts), w.get(b + "attn_o.weight")));
        x = ggml_add(ctx, x, geglu(ctx, gemma_rms_norm(ctx, x, w.get(b + "ffn_norm.weight"), m.eps, constants), w, b, hp));
    }
}

namespace {
// The time MLP: silu(out(silu(in(time embedding)))), [E, steps].
ggml_tensor* time_condition(ggml_context* ctx, const GgufWeights& w, ggml_tensor* time_emb) {
    ggml_tensor* cond = ggml_silu(ctx, linear(ctx, time_emb, w.get("action.timestep_mlp.in.weight"),
                                              w.get("action.timestep_mlp.in.bias")));
    return ggml_silu(ctx, linear(ctx, cond, w.get("action.timestep_mlp.out.weight"), w.get("action.timestep_mlp.out.bias")));
}

// One adaptive norm's modulation from the time condition: one product with a column per step.
AdaModulation modulation(ggml_context* ctx, const GgufWeights& w, ggml_tensor* cond, const std::string& norm) {
    ggml_tensor* mod = linear(ctx, cond, w.get(norm + ".weight"), w.get(norm + ".bias"));  // [3E, steps]
    return AdaModulation{mod, ggml_scale_bias(ctx, mod, 1.0f, 1.0f)};
}

// Every adaptive norm of the expert by name (its weights' prefix), in ExpertConditioning's order.
ExpertConditioning per_norm(const Pi05Hparams& hp, const std::function<AdaModulation(const std::string&)>& make) {
    ExpertConditioning c;
    for (int i = 0; i < hp.expert.layers; ++i) {
        const std::string b = "action.blk." + std::to_string(i) + ".";
        c.attn.push_back(make(b + "attn_norm"));
        c.ffn.push_back(make(b + "ffn_norm"));
    }
    c.out = make("action.output_norm");
    return c;
}
}  // namespace

ExpertConditioning build_expert_conditioning(ggml_context* ctx, const GgufWeights& w, const Pi05Hparams& hp,
                                             ggml_tensor* time_emb) {
    ggml_tensor* cond = time_condition(ctx, w, time_emb);
    return per_norm(hp, [&](const std::string& norm) { return modulation(ctx, w, cond, norm); });
}

ggml_tensor* build_expert_step(ggml_context* ctx, ggml_cgraph* gf, const GgufWeights& w, const Pi05Hparams& hp,
                               ggml_tensor* x_t, const ExpertConditioning& cond, int step, ggml_tensor* positions,
                               ggml_tensor* rows, const KvCache& cache, const std::vector<int>& n_prefix,
                               const std::vector<ggml_tensor*>& masks, const ConstantTensors* constants) {
    const auto& e = hp.expert;
    const int64_t H = x_t->ne[1], horizon = H / static_cast<int64_t>(n_prefix.size());
    const std::vector<int64_t> bases = cache_bases(n_prefix, static_cast<int>(horizon), hp.kv_pad);
    ggml_tensor* x = linear(ctx, x_t, w.get("action.action_in.weight"), w.get("action.action_in.bias"));
    for (int i = 0; i < e.layers; ++i) {
        const std::string b = "action.blk." + std::to_string(i) + ".";
        ggml_tensor* gate = nullptr;
        ggml_tensor* h = ada_rms_norm(ctx, gf, x, cond.attn[i], step, e.eps, &gate);
        auto [q, k, v] = project_qkv(ctx, w, b, h, e);
        q = rope(ctx, q, positions, e.head_dim, hp.rope_theta);
        k = rope(ctx, k, positions, e.head_dim, hp.rope_theta);
        // The chunk's K/V go into the cache right after each observation's prefix; the range views
        // below are views of set_rows' result, so every read is ordered after the write.
        ggml_tensor* keys_all = ggml_set_rows(ctx, cache.k[i], token_matrix(ctx, k), rows);
        ggml_tensor* values_all = ggml_set_rows(ctx, cache.v[i], token_matrix(ctx, v), rows);
        // Observation s: its chunk's tokens attend to its own cached prefix and its own chunk.
        std::vector<ggml_tensor*> parts;
        // With masks: the padded range (kv_span rows), its rows past the chunk masked out.
        for (size_t s = 0; s < n_prefix.size(); ++s) {
            ggml_tensor* mask = masks.empty() ? nullptr : masks[s];
            const int64_t len = mask ? mask->ne[0] : n_prefix[s] + horizon;
            parts.push_back(attention(ctx, hp.flash_text, token_rows(ctx, q, static_cast<int64_t>(s) * horizon, horizon),
                                      cache_range(ctx, keys_all, e, bases[s], len),
                                      cache_range(ctx, values_all, e, bases[s], len), 1, mask));
        }
        // a gate folded into this step's copy of the output / down projection needs no multiply
        ggml_tensor* out_w = constants ? constants->find(folded_name(b + "attn_output.weight", step)) : nullptr;
        ggml_tensor* a = linear(ctx, concat_tokens(ctx, parts), out_w ? out_w : w.get(b + "attn_output.weight"));
        x = ggml_add(ctx, x, out_w ? a : ggml_mul(ctx, a, gate));
        h = ada_rms_norm(ctx, gf, x, cond.ffn[i], step, e.eps, &gate);
        ggml_tensor* down_w = constants ? constants->find(folded_name(b + "ffn_down.weight", step)) : nullptr;
        ggml_tensor* y = geglu(ctx, h, w, b, hp, down_w);
        x = ggml_add(ctx, x, down_w ? y : ggml_mul(ctx, y, gate));
    }
    ggml_tensor* gate = nullptr;
    ggml_tensor* h = ada_rms_norm(ctx, gf, x, cond.out, step, e.eps, &gate);
    return linear(ctx, h, w.get("action.action_out.weight"), w.get("action.action_out.bias"));
}

std::string folded_name(const std::string& weight, int step) { return weight + "@step" + std::to_string(step); }

std::vector<ggml_tensor*> foldable_matrices(const GgufWeights& w, const Pi05Hparams& hp, int layer) {
    std::vector<ggml_tensor*> out;
    const std::string b = "action.blk." + std::to_string(layer) + ".";
    for (const char* matrix : {"attn_output.weight", "ffn_down.weight"}) {
        ggml_tensor* W = w.get(b + matrix);
        const bool plain = W->type == GGML_TYPE_F32 || W->type == GGML_TYPE_F16 || W->type == GGML_TYPE_BF16;
        out.push_back(plain && W->ne[1] == hp.expert.hidden ? W : nullptr);
    }
    return out;
}

ConstantTensors::Definition define_prefix_constants(ggml_context* ctx, const GgufWeights& w, const Pi05Hparams& hp) {
    ConstantTensors::Definition def;
    for (int i = 0; i < hp.llm.layers; ++i) {
        for (const char* norm : {"attn_norm.weight", "ffn_norm.weight"}) {
            ggml_tensor* weight = w.get("pali.blk." + std::to_string(i) + "." + norm);
            ggml_tensor* f32 = weight->type == GGML_TYPE_F32 ? weight : ggml_cast(ctx, weight, GGML_TYPE_F32);
            def.constants.push_back({std::string(ggml_get_name(weight)) + kPlusOne, ggml_scale_bias(ctx, f32, 1.0f, 1.0f),
                                     GGML_TYPE_F32});
        }
    }
    return def;
}

ConstantTensors::Definition define_expert_constants(ggml_context* ctx, const GgufWeights& w, const Pi05Hparams& hp,
                                                    const float* time_emb, int num_steps, bool fold_gates) {
    ConstantTensors::Definition def;
    ggml_tensor* t = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.expert.hidden, num_steps);
    ggml_set_input(t);
    def.inputs.push_back({t, time_emb});
    ggml_tensor* time_cond = time_condition(ctx, w, t);
    const ExpertConditioning cond = per_norm(hp, [&](const std::string& norm) {
        const AdaModulation m = modulation(ctx, w, time_cond, norm);
        def.constants.push_back({norm + ".mod", m.mod, GGML_TYPE_F32});
        def.constants.push_back({norm + ".mod" + kPlusOne, m.mod_plus_one, GGML_TYPE_F32});
        return m;
    });
    if (!fold_gates) return def;
    // y * gate = (diag(gate) W) x: each output row of W scaled by its channel's gate, one copy per step,
    // kept in W's own type (only plain F32 / F16 / BF16 matrices: quantised rows are not rescaled)
    const int64_t E = hp.expert.hidden;
    for (int i = 0; i < hp.expert.layers; ++i) {
        const std::vector<ggml_tensor*> matrices = foldable_matrices(w, hp, i);
        const AdaModulation* mods[] = {&cond.attn[i], &cond.ffn[i]};  // the gates of the output, the down projection
        for (size_t k = 0; k < matrices.size(); ++k) {
            ggml_tensor* W = matrices[k];
            if (!W) continue;
            ggml_tensor* W32 = W->type == GGML_TYPE_F32 ? W : ggml_cast(ctx, W, GGML_TYPE_F32);
            const AdaModulation* mod = mods[k];
            const size_t f = ggml_element_size(mod->mod);
            for (int step = 0; step < num_steps; ++step) {
                ggml_tensor* gate = ggml_view_2d(ctx, mod->mod, 1, E, f, step * mod->mod->nb[1] + 2 * E * f);  // [1, E]
                def.constants.push_back({folded_name(ggml_get_name(W), step), ggml_mul(ctx, W32, gate), W->type});
            }
        }
    }
    return def;
}

ExpertConditioning conditioning_from(const ConstantTensors& constants, const Pi05Hparams& hp) {
    return per_norm(hp, [&](const std::string& norm) {
        return AdaModulation{constants.get(norm + ".mod"), constants.get(norm + ".mod" + kPlusOne)};
    });
}

}  // namespace vla_edge
