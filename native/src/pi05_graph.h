// pi0.5 hyper-parameters (from GGUF metadata, real pi0.5 values when a key is absent) and the
// ggml graph builders for its three stages. Semantics match targets/reference (the NumPy oracle).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "constant_tensors.h"
#include "ggml.h"
#include "gguf_weights.h"

namespace vla_edge {

struct StackHparams {
    int hidden, ffn, layers, heads, kv_heads, head_dim;
    float eps;
};

struct Pi05Hparams {
    int v_hidden = 1152, v_ffn_stored = 4352, v_layers = 27, v_heads = 16, image_size = 224, patch = 14;
    float v_eps = 1e-6f;
    int vocab = 257152;
    StackHparams llm{2048, 16384, 18, 8, 1, 256, 1e-6f};
    StackHparams expert{1024, 4096, 18, 8, 1, 256, 1e-6f};
    float rope_theta = 10000.f;
    int action_dim = 32, horizon = 50;
    float time_min_period = 4e-3f, time_max_period = 4.0f;
    // Set by the runtime, not read from weights. GELU / GeGLU: on the CPU one fused custom op per
    // tensor (fused_cpu_ops; ggml's own CPU GELU reads an fp16 table ~1e-3 off the reference); on
    // other backends ggml's GELU / GeGLU ops (backend_gelu_ops: one kernel each, tanh in float32 on
    // CUDA) instead of the ~9-kernel element-wise chain; neither set: the chain (A/B checks).
    bool fused_cpu_ops = false;
    bool backend_gelu_ops = false;
    // Set: attention as ggml_flash_attn_ext (one kernel, no score matrix in memory, no V transpose)
    // in the vision tower / in the prefix and expert, wherever this backend runs it for the shapes
    // at hand; the matmul + softmax form otherwise.
    ggml_backend_t flash_vision = nullptr;
    ggml_backend_t flash_text = nullptr;
    // Rows per observation's K/V range are rounded up to a multiple of this (1: not padded). With
    // 256 the expert attends over a zero-filled, masked range whose length ggml-CUDA's grouped-query
    // flash kernel accepts (it reads each K/V tile once for all 8 query heads; it needs a mask and a
    // K/V length that is a multiple of 256). On by default off the CPU (VLA_EDGE_PAD_EXPERT_KV, docs/gpu.md).
    int kv_pad = 1;

    int num_patches() const { return (image_size / patch) * (image_size / patch); }
    // Reads the keys our packs and the released ActQuant pi05.gguf carry, then checks every
    // tensor the graphs use for presence, shape (padded input dims allowed) and type.
    static Pi05Hparams from_weights(const GgufWeights& w);
};

// Per layer K and V rows [kv_heads*head_dim, capacity], F32 (F16 where flash attention runs off
// the CPU: its kernels read F16). Observation s of a batch owns rows [base_s, base_s + n_prefix_s
// + horizon): its prefix, written once by the prefix graph, then its chunk's rows, rewritten by
// every flow step, so attention reads one contiguous range and nothing is concatenated.
struct KvCache {
    std::vector<ggml_tensor*> k, v;
};

// Rows of one observation's K/V range: its prefix and chunk, rounded up to a multiple of kv_pad.
int64_t kv_span(int n_prefix, int horizon, int kv_pad);
// base_s of every observation: the ranges (kv_span rows each) lie one after another.
std::vector<int64_t> cache_bases(const std::vector<int>& n_prefix, int horizon, int kv_pad);

// Batches: the token matrices carry every observation's tokens one after another (images, prefix
// and chunk tokens alike), so each weight matrix is read once per batch; attention and RoPE
// positions stay per observation. patches: all present cameras of all observations.
ggml_tensor* build_vision(ggml_context* ctx, const GgufWeights& w, const Pi05Hparams& hp, ggml_tensor* patches);
// lengths: each observation's prefix tokens. rows: I64 [tokens], the cache row of every token.
void build_prefix(ggml_context* ctx, ggml_cgraph* gf, const GgufWeights& w, const Pi05Hparams& hp,
                  ggml_tensor* embeddings, ggml_tensor* positions, ggml_tensor* rows, const KvCache& cache,
                  const std::vector<int>& lengths, const ConstantTensors* constants = nullptr);
// One adaptive RMSNorm's modulation for every flow step: mod [3E, steps] = [scale | shift | gate]
// per column, and mod + 1 (whose first third is the scale factor the norm multiplies by).
struct AdaModulation {
    ggml_tensor* mod;
    ggml_tensor* mod_plus_one;
};

// The expert's conditioning depends on the flow time only, never on the actions: the time MLP and
// every adaptive norm's modulation are computed for all steps at once (one product per norm with
// a column per step, instead of one matrix-vector product per norm and step).
struct ExpertConditioning {
    std::vector<AdaModulation> attn, ffn;  // per layer
    AdaModulation out;                     // the final norm
};

// time_emb: [expert hidden, steps], the sinusoidal embedding of each step's flow time.
ExpertConditioning build_expert_conditioning(ggml_context* ctx, const GgufWeights& w, const Pi05Hparams& hp,
                                             ggml_tensor* time_emb);
// One flow step (column `step` of cond). x_t: [action_dim, horizon * n_prefix.size()]; n_prefix:
// each observation's cached prefix length; rows: I64 [horizon * n_prefix.size()], the cache row
// of every chunk token. gf: the graph being built (the norms' modulation views enter it first).
ggml_tensor* build_expert_step(ggml_context* ctx, ggml_cgraph* gf, const GgufWeights& w, const Pi05Hparams& hp,
                               ggml_tensor* x_t, const ExpertConditioning& cond, int step, ggml_tensor* positions,
                               ggml_tensor* rows, const KvCache& cache, const std::vector<int>& n_prefix,
                               const std::vector<ggml_tensor*>& masks = {}, const ConstantTensors* constants = nullptr);

// Constants (ConstantTensors) the graphs read where given. Suffix of a Gemma norm's 1 + w and of a
// modulation's mod + 1.
inline constexpr const char* kPlusOne = "+1";
// The name of `weight`'s copy with flow step `step`'s gate folded in.
std::string folded_name(const std::string& weight, int step);
// Expert layer `layer`'s output and down projection, each where its gate can be folded into it
// (a plain F32 / F16 / BF16 matrix with one row per expert channel), else nullptr.
std::vector<ggml_tensor*> foldable_matrices(const GgufWeights& w, const Pi05Hparams& hp, int layer);
// The LLM's Gemma norms as 1 + w ("<norm weight>+1"): one multiply after the norm instead of two ops.
ConstantTensors::Definition define_prefix_constants(ggml_context* ctx, const GgufWeights& w, const Pi05Hparams& hp);
// The expert's conditioning for a schedule of num_steps Euler steps (it depends on the flow time
// only, and the schedule is fixed): every adaptive norm's modulation ("<norm>.mod", "<norm>.mod+1",
// [3E, steps]) from time_emb [E * num_steps floats]; with fold_gates, per step a copy of every
// layer's output and down projection with that step's gate folded into its rows (folded_name;
// F32 / F16 / BF16 matrices only), so the gate's multiply leaves the graph.
ConstantTensors::Definition define_expert_constants(ggml_context* ctx, const GgufWeights& w, const Pi05Hparams& hp,
                                                    const float* time_emb, int num_steps, bool fold_gates);
// The conditioning read from constants made by define_expert_constants.
ExpertConditioning conditioning_from(const ConstantTensors& constants, const Pi05Hparams& hp);

}  // namespace vla_edge
