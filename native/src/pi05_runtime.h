// One loaded pi0.5 model on one ggml backend, with graphs and compute buffers reused across calls.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "gguf_weights.h"
#include "pi05_graph.h"
#ifdef VLA_EDGE_WITH_CUDA
#include "cuda_expert_loop.h"
#include "cuda_prefix_loop.h"
#include "cuda_vision_loop.h"
#endif

namespace vla_edge {

struct RuntimeOptions {
    int n_threads = 4;
    std::string device = "cpu";  // "cpu" or "cuda[:N]" when built with VLA_EDGE_CUDA
    int max_prefix_tokens = 0;   // 0 = 3 images + 256 text tokens
    bool unfused_ops = false;    // keep GELU/GeGLU as ggml's element-wise chain (A/B checks)
    // "flash": ggml_flash_attn_ext wherever the backend runs it (else the matmul form, per call
    // site); "matmul": products + softmax; "auto": flash off the CPU, and on the CPU for the vision
    // tower only (where it measured faster, docs/x86.md).
    std::string attention = "auto";
    // "chunk": every flow step in one graph (one launch, no host round trip per step: what a GPU
    // needs, and what lets ggml-CUDA replay the whole loop as one CUDA graph); "step": one graph per
    // flow step (per-step timings); "auto": chunk on GPU backends, step on the CPU.
    std::string expert_graph = "auto";
    // Off-CPU only. "auto": BF16 on a discrete GPU with room for it (F16 before Ampere), the
    // pack's stored types elsewhere (DeviceWeights in gguf_weights.h says why); "stored": matrices keep the pack's
    // types; "f16": K-quant / legacy-quant matrices are widened to F16 when uploaded (cuBLAS
    // tensor-core products instead of ggml's quantised kernels, at ~3-4x the device memory of those
    // matrices; values are the pack's, rounded to F16); "bf16": quantised and F16 matrices held as
    // BF16 (cuBLAS writes F32 results directly, one conversion kernel fewer per product; values
    // rounded to BF16's 8-bit mantissa). The CPU takes "auto" or "stored".
    std::string device_weights = "auto";
    // Off-CPU only: each layer's q/k/v and gate/up matrices laid out as one matrix each on the
    // device (GgufWeights::fused): one product instead of three / two, same values. "auto": on
    // (FuseMatrices::automatic); "true" / "false". The CPU takes "auto" or "false" (unfused).
    std::string fused_matrices = "auto";
    // CPU only: where the weights live, "mapped", "anonymous" or "repacked" (see CpuWeights in
    // gguf_weights.h). "mapped" is the default because it measured fastest (and loads in 0.25 s at
    // the lowest RSS) beside the other two in benchmarks/vs_actquant.py. Ignored by GPU backends.
    std::string cpu_weights = "mapped";
};

// Wall time per stage of the last call, milliseconds, in execution order.
using StageTimes = std::vector<std::pair<std::string, double>>;

// One observation of a batch, as sample_actions takes it (the caller owns the memory).
struct SampleInputs {
    const float* images;    // n_images x S x S x 3
    int n_images;
    const int32_t* tokens;  // n_tokens valid prompt tokens
    int n_tokens;
    const float* noise;     // horizon x action_dim
};

// Sees the input of every product with a weight matrix: (weight name, float32 row-major data,
// rows, columns), in graph order, after the graph that holds it ran. Calibration (`vla-edge
// calibrate --target x86`) collects activation statistics through it.
using MatmulObserver = std::function<void(const std::string&, const float*, int64_t, int64_t)>;

class Pi05Runtime {
  public:
    Pi05Runtime(const std::string& gguf_path, const RuntimeOptions& options);
    ~Pi05Runtime();
    Pi05Runtime(const Pi05Runtime&) = delete;
    Pi05Runtime& operator=(const Pi05Runtime&) = delete;

    // images: n_images x S x S x 3 float32 in [-1, 1] (HWC, present cameras only, slot order);
    // tokens: valid prompt tokens (BOS first, no padding); noise: horizon x action_dim (x at t=1).
    // Writes horizon x action_dim normalised actions to `actions`.
    void sample_actions(const float* images, int n_images, const int32_t* tokens, int n_tokens, const float* noise,
                        int num_steps, float* actions, StageTimes* times);
    // Several observations in one pass per stage (each weight matrix read once for all of them);
    // each gets the chunk sample_actions would give it alone, up to float summation order.
    // Writes batch.size() x horizon x action_dim. Stage times are the batch's.
    void sample_actions_batch(const std::vector<SampleInputs>& batch, int num_steps, float* actions,
                              StageTimes* times);

    const Pi05Hparams& hparams() const { return hp_; }
    size_t weight_bytes() const { return weights_->tensor_bytes(); }
    size_t compute_buffer_bytes() const;
    int graph_builds() const { return graph_builds_; }  // grows only when input shapes change
    int n_threads() const { return n_threads_; }
    std::string backend_name() const;
    const char* expert_graph() const { return chunk_expert_ ? "chunk" : "step"; }
    // "flash", "matmul", or which stages run which form, and why a stage asked for flash does not.
    const std::string& attention() const { return attention_; }
    // "fused-cpu", "ggml-ops" or "element-wise": how GELU / GeGLU run (see Pi05Hparams).
    const char* gelu_ops() const;
    size_t device_weight_bytes() const { return weights_->device_bytes(); }
    // "f16" / "stored" and how that was chosen (see RuntimeOptions::device_weights).
    const std::string& device_weights() const { return weights_->device_weights_note(); }
    bool fused_matrices() const {
        return weights_->fused("pali.blk.0.attn_qkv.weight") || weights_->fused("action.blk.0.attn_qkv.weight");
    }
    const GgufWeights& weights() const { return *weights_; }
    // RMS_NORM -> MUL -> ADD runs of adjacent nodes, each feeding the next, in the expert graph built
    // last (chunk, else step): the runs ggml-CUDA executes as one fused kernel (checked on any backend).
    int adjacent_norm_chains() const;
    // ROPE -> VIEW -> SET_ROWS runs (a key's rotation written into the KV cache) in the expert graph
    // built last plus the prefix graph: what ggml-CUDA runs as one kernel instead of two.
    int adjacent_rope_set_rows() const;
    // Input shapes that have a CUDA graph of their own (0 on the CPU; see ShapeMarkers).
    size_t shape_markers() const { return markers_.count(); }
    // Rows each observation's K/V range is padded to a multiple of (1: none; VLA_EDGE_PAD_EXPERT_KV).
    int expert_kv_pad() const { return hp_.kv_pad; }
    // Named constants held (prefix + expert, see the constructor): 0 unless one of them is switched on.
    size_t constant_tensors() const { return prefix_constants_.size() + expert_constants_.size(); }
    // What is computed once, e.g. "gemma norms 1 + w; conditioning for 10 steps; gates folded (auto: room, 2.11 GiB)".
    std::string constants_note() const;
    // Which code runs the chunk's flow steps: "cuda (own kernels, N shapes captured)" (CudaExpertLoop),
    // or "ggml graph" and, off the CPU, why our own loop does not run (VLA_EDGE_CUDA_EXPERT, docs/gpu.md).
    std::string expert_loop() const;
    // Which code runs the prefix: "cuda (own kernels, N shapes captured)" (CudaPrefixLoop, on CUDA devices
    // unless VLA_EDGE_CUDA_PREFIX=0), or "ggml graph" and why.
    std::string prefix_loop() const;
    // Which code runs the vision tower: "cuda (own kernels, N image counts captured)" (CudaVisionLoop,
    // on CUDA devices unless VLA_EDGE_CUDA_VISION=0), or "ggml graph" and why.
    std::string vision_loop() const;

    // Empty = off. While set, every graph keeps its weight products' inputs alive (marked as
    // outputs, so the allocator does not reuse their memory: more compute memory, same values)
    // and reports them after it runs; setting or clearing it rebuilds the graphs.
    void set_matmul_observer(MatmulObserver observer);

  private:
    struct Graph {
        std::vector<uint8_t> meta;  // ggml context memory for tensor/graph metadata, reused
        ggml_context* ctx = nullptr;
        ggml_cgraph* gf = nullptr;
        ggml_gallocr_t alloc = nullptr;
        std::vector<int> key;  // shapes the graph was built for (per observation of the batch)
        std::map<std::string, ggml_tensor*> io;
        std::vector<std::pair<std::string, ggml_tensor*>> observed;  // (weight, its input) with an observer
        // marker: this (stage, shape)'s first node, or null (see ShapeMarkers)
        ggml_context* begin(size_t max_nodes, ggml_tensor* marker);
        void release();
    };

    // ggml-CUDA keys the CUDA graph it captures for a ggml graph by the address of the graph's first
    // node, and when the graph under a key changes it *updates* the instantiated CUDA graph in place
    // (cudaGraphExecUpdate) rather than instantiating a new one. A stage rebuilt for another input
    // shape reuses its metadata memory, so its first node kept its address and the CUDA graph
    // captured for the old shape was updated to the new shape's kernels; with cuBLAS's F16 kernels
    // on Hopper that ended in "an illegal instruction" (H200 and H100, 2026-12-05). So every
    // (stage, shape) begins with its own marker: a one-element view of a persistent device tensor,
    // which no backend computes (views are no-ops) and whose address is that shape's alone for the
    // runtime's lifetime (markers are never freed before the backend: ~0.4 KB per shape seen). Each
    // shape thus gets its own CUDA graph, captured for it. Off on the CPU (no CUDA graphs there) unless
    // VLA_EDGE_SHAPE_MARKERS=1 (tests); VLA_EDGE_SHAPE_MARKERS=0 turns them off on a GPU (A/B runs).
    class ShapeMarkers {
      public:
        ShapeMarkers() = default;
        ShapeMarkers(const ShapeMarkers&) = delete;
        ShapeMarkers& operator=(const ShapeMarkers&) = delete;
        ~ShapeMarkers() { release(); }
        void enable(ggml_backend_t backend);
        ggml_tensor* get(const Graph& stage, const std::vector<int>& key);  // null when disabled
        size_t count() const { return markers_.size(); }
        void release();

      private:
        static constexpr size_t kPerContext = 1024;
        ggml_context* source_ctx_ = nullptr;
        ggml_backend_buffer_t source_buf_ = nullptr;
        ggml_tensor* source_ = nullptr;
        std::vector<ggml_context*> contexts_;  // kPerContext markers each, the last filling up
        std::map<std::pair<const Graph*, std::vector<int>>, ggml_tensor*> markers_;
    };

    void release();
    void allocate_cache(int tokens);
    void ensure_vision(int n_images);
    void ensure_prefix(const std::vector<int>& n_prefix);
    void ensure_expert(const std::vector<int>& n_prefix);
    void ensure_expert_chunk(const std::vector<int>& n_prefix, int num_steps);
    // ggml's two ways through the flow steps, where our CUDA expert loop did not run them (host_x_
    // in and out): every step in one graph, or one graph per step with x updated on the host.
    void run_expert_chunk_graph(const std::vector<int>& n_prefix, int num_steps, size_t prefix_rows);
    void run_expert_step_graphs(const std::vector<int>& n_prefix, int num_steps, size_t prefix_rows, StageTimes& t);
    void ensure_expert_constants(int num_steps);  // (re)made when the step count changes
    // True when CudaExpertLoop runs this call's flow steps (made at the first call that can use it).
    bool use_cuda_expert(int num_steps);
    void drop_cuda_expert();  // its pointers into the cache / constants are about to go
    // True when CudaPrefixLoop runs this call's prefix (decided at the first call that asks).
    bool use_cuda_prefix();
    void drop_cuda_prefix();  // its pointers into the cache are about to go
    // True when CudaVisionLoop runs this call's vision tower (decided at the first call that asks).
    bool use_cuda_vision();
#ifdef VLA_EDGE_WITH_CUDA
    // The loop's view of the weights, constants and cache; throws naming what does not fit it.
    CudaExpertSpec cuda_expert_spec(int num_steps) const;
    CudaPrefixSpec cuda_prefix_spec() const;
    CudaVisionSpec cuda_vision_spec() const;
    CudaStackShape cuda_stack_shape(const StackHparams& m) const;  // device, geometry and cache rows
#endif
    // Padded expert K/V (hp_.kv_pad > 1): one F16 [kv_span, horizon] mask input per observation,
    // named mask<s>, created with the expert graphs; the host masks are made once per call
    // (prepare_expert_masks) and uploaded before every compute that reads them (set_expert_masks).
    std::vector<ggml_tensor*> expert_masks(ggml_context* ctx, Graph& g, const std::vector<int>& n_prefix) const;
    void prepare_expert_masks(const std::vector<int>& n_prefix);
    void set_expert_masks(Graph& g, size_t n_obs);
    void time_embedding(int step, int num_steps, float* out) const;
    void finish(Graph& g, const char* stage);
    void choose_attention(const std::string& option, bool cpu);
    void compute(Graph& g);
    void keep_matmul_inputs(Graph& g);
    void report_matmul_inputs(const Graph& g) const;
    void embed_tokens(const int32_t* tokens, int n_tokens, float* out) const;
    void patchify(const float* image, float* dst) const;

    ggml_backend_t backend_ = nullptr;
    std::unique_ptr<GgufWeights> weights_;
    Pi05Hparams hp_;
    int n_threads_ = 1;
    int max_prefix_ = 0;      // per observation
    int cache_tokens_ = 0;    // KV cache rows: kv_span(max_prefix_) per observation of the largest batch so far
    ggml_type cache_type_ = GGML_TYPE_F32;
    ggml_context* cache_ctx_ = nullptr;
    ggml_backend_buffer_t cache_buf_ = nullptr;
    KvCache cache_;
    Graph vision_, prefix_, expert_, chunk_;
    ShapeMarkers markers_;
    // See the constructor: the prefix's constants, and the expert's for expert_constant_steps_ steps.
    ConstantTensors prefix_constants_, expert_constants_;
    int expert_constant_steps_ = 0;
    bool constant_conditioning_ = false;
    enum class FoldGates { off, on, automatic } fold_gates_ = FoldGates::off;
    std::string expert_constants_note_;
    // Our own CUDA loop for the chunk (off the CPU; see use_cuda_expert): wanted unless
    // VLA_EDGE_CUDA_EXPERT=0, and why it does not run where it does not.
    bool cuda_expert_wanted_ = false;
    std::string cuda_expert_note_;
    int cuda_device_ = 0;
    int cuda_expert_steps_ = 0;  // the step count the loop was made (or found not to fit) for; 0: undecided
    // The prefix's loop likewise (see use_cuda_prefix): wanted on CUDA unless VLA_EDGE_CUDA_PREFIX=0.
    bool cuda_prefix_wanted_ = false;
    bool cuda_prefix_decided_ = false;
    std::string cuda_prefix_note_;
    // The vision tower's loop likewise (see use_cuda_vision): wanted on CUDA unless VLA_EDGE_CUDA_VISION=0.
    bool cuda_vision_wanted_ = false;
    bool cuda_vision_decided_ = false;
    std::string cuda_vision_note_;
#ifdef VLA_EDGE_WITH_CUDA
    std::unique_ptr<CudaExpertLoop> cuda_expert_;
    std::unique_ptr<CudaPrefixLoop> cuda_prefix_;
    std::unique_ptr<CudaVisionLoop> cuda_vision_;
#endif
    bool chunk_expert_ = false;
    int graph_builds_ = 0;
    std::string attention_ = "matmul";
    MatmulObserver observer_;
    std::vector<float> host_patches_, host_prefix_, host_x_, host_time_, host_v_;
    std::vector<int32_t> host_pos_;
    std::vector<int64_t> host_rows_;  // cache row of every prefix token, then of every chunk token
    std::vector<ggml_fp16_t> host_mask_;  // every observation's expert mask, one after another
};

}  // namespace vla_edge
