// The action expert's ten flow steps as our own CUDA code: cuBLAS BF16 products plus seven kernels
// written for this model, replayed as one CUDA graph per input shape. ggml's graph of the same loop
// runs ~17 kernels per layer (each product's input cast to BF16, residual adds, RoPE, two cache
// writes, attention); here the norm writes BF16 itself, the residual rides in the product
// (beta = 1), RoPE and both cache writes are one kernel, and attention is one kernel for all heads of
// an observation, split over its keys, its 64-key splits' K/V staged once in shared memory for 64
// query rows, plus one merging the splits; each product runs the cuBLAS algorithm timed fastest for
// its shape (docs/gpu.md, "Our own expert loop"). Other forms for A/B runs, read from the environment
// when the loop is made: VLA_EDGE_CUDA_ATTENTION=split128|tile32 (128-key splits read straight from
// the cache, the first default; 32-key tiles) and VLA_EDGE_CUDA_TUNED_PRODUCTS=0 (cuBLAS's default
// algorithm). The kernels are in native/cuda/expert_kernels.cuh. Plain C++ header: no CUDA types leak out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vla_edge {

// Element types of the matrices the loop reads besides the BF16 layer matrices.
enum class CudaElem { f32, f16, bf16 };

// A row-major [rows][stride] matrix in device memory (a ggml weight: ne[1] rows of ne[0] stored
// columns, `cols` of them meaningful; stride > cols where the pack pads the input dimension).
struct CudaMatrix {
    const void* data = nullptr;
    CudaElem type = CudaElem::bf16;
    int64_t rows = 0, cols = 0, stride = 0;
};

struct CudaExpertLayer {
    CudaMatrix qkv;                              // BF16 [q heads | k | v] x hidden
    CudaMatrix gate_up;                          // BF16 [gate | up] x hidden
    std::vector<CudaMatrix> out_w, down_w;       // BF16, per flow step, that step's gate folded in
    const float *attn_mod = nullptr, *attn_mod1 = nullptr;  // F32 [3E] per step: scale|shift|gate, and + 1
    const float *ffn_mod = nullptr, *ffn_mod1 = nullptr;
    void *cache_k = nullptr, *cache_v = nullptr;  // F16 [cache rows][head_dim] (one K/V head)
};

// What our CUDA loops (this one, cuda_prefix_loop.h) read alike: one Gemma stack's geometry on one
// device and the rows of the K/V cache it shares with the other stack.
struct CudaStackShape {
    int device = 0;
    int hidden = 0, ffn = 0, heads = 0, head_dim = 0;
    float eps = 1e-6f, rope_theta = 10000.f;
    int64_t cache_rows = 0;
};

struct CudaExpertSpec : CudaStackShape {
    int horizon = 0, action_dim = 0, steps = 0;
    std::vector<CudaExpertLayer> layers;
    const float *out_mod = nullptr, *out_mod1 = nullptr;  // the final norm's modulation
    CudaMatrix action_in, action_out;                     // F32 / F16 / BF16
    const float *action_in_bias = nullptr, *action_out_bias = nullptr;
};

class CudaExpertLoop {
  public:
    // Checks the spec and the device (compute capability >= 8.0 for BF16 tensor cores); throws
    // std::runtime_error naming what does not fit. Nothing is launched until run().
    explicit CudaExpertLoop(CudaExpertSpec spec);
    ~CudaExpertLoop();
    CudaExpertLoop(const CudaExpertLoop&) = delete;
    CudaExpertLoop& operator=(const CudaExpertLoop&) = delete;

    // Euler from the noise in `x` (host, n_prefix.size() x horizon x action_dim floats) to t = 0,
    // in place. Observation s reads its prefix K/V at cache rows [bases[s], bases[s] + n_prefix[s])
    // and writes its chunk's rows right after them. The ggml graphs that wrote the prefix must have
    // finished (ggml_backend_graph_compute returns after they have).
    void run(const std::vector<int>& n_prefix, const std::vector<int64_t>& bases, float* x);
    // Input shapes with a captured CUDA graph.
    size_t captured_graphs() const;
    // The attention form and how the layer products were chosen, e.g. "attention tile64w8; merge 2
    // warps per row; 4 product shapes timed cold: 3 cuBLASLt, 1 cuBLAS default; vector norms".
    std::string describe() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Clears this thread's last CUDA runtime error, which a loop that failed may leave behind: ggml-CUDA
// checks cudaGetLastError() after its own launches and aborts the process on any error it finds, so
// the runtime calls this before ggml's graph takes over a failed loop's stage.
void cuda_clear_last_error();

}  // namespace vla_edge
