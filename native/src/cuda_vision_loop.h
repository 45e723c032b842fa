// The vision tower (SigLIP) and its projection into the LLM's width as our own CUDA code, in place
// of the ggml vision graph (pi05_graph.cpp, build_vision). ggml-CUDA runs that graph kernel by kernel
// (~20 per layer: each product's input cast to BF16, bias and residual adds, a norm in three kernels,
// padding, GELU, flash attention for head_dim 72 with its fix-up) and spent ~6.5 ms of a 2-view chunk
// on an H100 there, ~7% of the tensor cores' floor. Here a layer is twelve to fourteen launches replayed as one
// CUDA graph per image count: the layer norm writes the products' BF16 input and adds the previous
// product's bias on the way, the residual rides in the products (beta = 1), attention is two
// batched cuBLAS products around one softmax kernel, and GELU adds its bias and writes BF16. Plain
// C++ header: no CUDA types leak out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda_expert_loop.h"  // CudaMatrix

namespace vla_edge {

struct CudaVisionLayer {
    const float *ln1_w = nullptr, *ln1_b = nullptr, *ln2_w = nullptr, *ln2_b = nullptr;  // F32 [width]
    // BF16 width x width each, or q/k/v as one BF16 (3 width) x width matrix in `qkv` (then q, k, v
    // are left empty); their biases F32 [width] (q_b, k_b, v_b may point into one fused bias)
    CudaMatrix q, k, v, qkv;
    const float *q_b = nullptr, *k_b = nullptr, *v_b = nullptr;
    CudaMatrix out;  // BF16 width x width
    const float* out_b = nullptr;
    CudaMatrix up;   // BF16 ffn x width
    const float* up_b = nullptr;  // F32 [ffn]
    CudaMatrix down;  // BF16 width x ffn
    const float* down_b = nullptr;
};

struct CudaVisionSpec {
    int device = 0;
    int width = 0, heads = 0, head_dim = 0, ffn = 0;
    int tokens_per_image = 0, patch_values = 0;  // patches per image; pixels per patch (patch^2 x 3)
    float eps = 1e-6f;
    CudaMatrix patch_w;     // F32 / F16 / BF16 width x patch_values, the patch embedding's kernel
    const float* patch_b = nullptr;  // F32 [width]
    CudaMatrix position;    // F32 / F16 / BF16 tokens_per_image x width
    std::vector<CudaVisionLayer> layers;
    const float *post_w = nullptr, *post_b = nullptr;  // F32 [width]
    CudaMatrix proj;        // BF16 out_width x width: the projection into the LLM
    const float* proj_b = nullptr;  // F32 [out_width]
    int out_width = 0;
};

class CudaVisionLoop {
  public:
    // Checks the spec and the device (compute capability >= 8.0); throws std::runtime_error naming
    // what does not fit. Converts the patch kernel and the position table to float32 copies of its
    // own; nothing else is launched until run().
    explicit CudaVisionLoop(CudaVisionSpec spec);
    ~CudaVisionLoop();
    CudaVisionLoop(const CudaVisionLoop&) = delete;
    CudaVisionLoop& operator=(const CudaVisionLoop&) = delete;

    // `patches`: host floats, n_images x tokens_per_image x patch_values (the runtime's patchify
    // layout). Image i's tokens_per_image x out_width projected tokens go to out[i], host memory or
    // device memory of this device (the prefix loop's input rows). Returns once they are there.
    void run(const float* patches, int n_images, const std::vector<float*>& out);
    // Image counts with a captured CUDA graph.
    size_t captured_graphs() const;
    // How q/k/v are multiplied: "q/k/v fused" (one product, VLA_EDGE_FUSE_VISION_QKV=1 where the
    // weights could be fused) or "q/k/v separate", so that an A/B of the switch shows whether it applied.
    std::string describe() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vla_edge
