// The LLM's pass over the prefix (image tokens + prompt) as our own CUDA code, in place of the ggml
// prefix graph (pi05_graph.cpp, build_prefix): the expert loop's kernels and cuBLAS BF16 products with
// Gemma's norms (x / rms(x) * (1 + w), 1 + w computed once with the constants), captured once per
// input shape into one CUDA graph. Its only output is each layer's K/V cache rows, which the expert
// reads; the last layer stops after them, as build_prefix does. The prefix graph spends ~7.7 ms of a
// 2-view chunk on an H100, its flash attention 1.2 ms of that, the rest in products and ~20 small
// kernels per layer (casts to BF16, adds, norms, RoPE, cache writes, GeGLU in F32); here a layer is
// nine launches: its gate/up product writes BF16 (as ggml-CUDA's do) and attention is the flash kernel
// (flash_attention.cuh; since 2026-12-07's seventh session: VLA_EDGE_CUDA_PREFIX_ATTENTION or
// VLA_EDGE_CUDA_ATTENTION names another form). The default on CUDA devices since
// the H100 run of 2026-12-07 (prefix 7.6 -> 5.7 ms at 2 views, exact to 1.2e-4 of ggml's chunk;
// docs/gpu.md); VLA_EDGE_CUDA_PREFIX=0 keeps ggml's graph. Plain C++ header: no CUDA types leak out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda_expert_loop.h"  // CudaMatrix, CudaStackShape

namespace vla_edge {

struct CudaPrefixLayer {
    CudaMatrix qkv;                                       // BF16 [q heads | k | v] x hidden
    CudaMatrix out, gate_up, down;                        // BF16; gate_up is [gate | up] x hidden
    const float *attn_norm1 = nullptr, *ffn_norm1 = nullptr;  // F32 [hidden]: the norms' 1 + w
    void *cache_k = nullptr, *cache_v = nullptr;          // F16 [cache rows][head_dim] (one K/V head)
};

struct CudaPrefixSpec : CudaStackShape {
    std::vector<CudaPrefixLayer> layers;  // the last layer's out, gate_up, down and ffn norm are not read
};

class CudaPrefixLoop {
  public:
    // Checks the spec and the device (compute capability >= 8.0); throws std::runtime_error naming
    // what does not fit. Nothing is launched until run().
    explicit CudaPrefixLoop(CudaPrefixSpec spec);
    ~CudaPrefixLoop();
    CudaPrefixLoop(const CudaPrefixLoop&) = delete;
    CudaPrefixLoop& operator=(const CudaPrefixLoop&) = delete;

    // `emb`: host floats, the observations' prefix embeddings one after another
    // (sum(n_prefix) x hidden). Observation s attends to its own n_prefix[s] tokens (positions from
    // 0) and writes its K/V to cache rows [bases[s], bases[s] + n_prefix[s]). Returns once written.
    // `uploads`: the token ranges {first, count} of `emb` to copy to the device; empty: all of them.
    // The other rows must have been written into input_rows(n_prefix) before (the vision loop's
    // image tokens, which then never pass through the host).
    void run(const float* emb, const std::vector<int>& n_prefix, const std::vector<int64_t>& bases,
             const std::vector<std::pair<int, int>>& uploads = {});
    // Where run() reads a batch of these prefix lengths from: device floats, sum(n_prefix) x hidden,
    // valid until a longer batch comes.
    float* input_rows(const std::vector<int>& n_prefix);
    // Input shapes with a captured CUDA graph.
    size_t captured_graphs() const;
    // The attention form, the merge and the products, as the expert loop's describe() (the two read
    // the same switches), e.g. "attention flash; merge 1 warp per row; 4 product shapes timed cold:
    // 3 cuBLASLt, 1 cuBLAS default; vector norms".
    std::string describe() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vla_edge
