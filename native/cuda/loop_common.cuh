// What our CUDA loops share (expert_loop.cu, prefix_loop.cu): errors that name the loop, the checks
// of the device and of the matrices they read, a stream with its cuBLAS handle and fixed workspace,
// the BF16 layer product, zero-filled device buffers freed together, graph capture, and one captured
// CUDA graph per input shape. Included by CUDA sources only.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_expert_loop.h"  // CudaMatrix
#include "expert_kernels.cuh"   // AttentionForm, tile_kernel_for
#include "flash_attention.cuh"  // flash_kernel_for

namespace vla_edge {

inline void loop_check(cudaError_t e, const char* who, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string(who) + ": " + what + ": " + cudaGetErrorString(e));
}

inline void loop_check(cublasStatus_t s, const char* who, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(who) + ": " + what + ": " + cublasGetStatusString(s));
}

// A device of compute capability 8.0+ (BF16 tensor cores).
inline void loop_require_bf16_device(const char* who, int device) {
    int major = 0;
    loop_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), who, "device attributes");
    if (major < 8) throw std::runtime_error(std::string(who) + ": needs compute capability 8.0 or newer (BF16 tensor cores)");
}

// That, and a head_dim the attention kernels take.
inline void loop_require_device(const char* who, int device, int head_dim) {
    loop_require_bf16_device(who, device);
    if (head_dim != 64 && head_dim != 128 && head_dim != 256) {
        throw std::runtime_error(std::string(who) + ": head_dim must be 64, 128 or 256");
    }
}

// Whether environment variable `name` turns a loop's switch on ("1") or off ("0"); anything else, or
// unset, keeps `fallback` (the loops read their switches when they are made).
inline bool loop_switch(const char* name, bool fallback) {
    const char* v = std::getenv(name);
    if (v && !std::strcmp(v, "1")) return true;
    if (v && !std::strcmp(v, "0")) return false;
    return fallback;
}

// Lets `kernel` (this translation unit's own: tile_kernel_for says why) take its dynamic shared memory.
inline void allow_shared_memory(const char* who, const expert_kernels::TileKernel& kernel) {
    loop_check(cudaFuncSetAttribute(kernel.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kernel.smem)),
               who, "attention shared memory");
}

// The attention form a Gemma loop runs: its `preferred` form (the expert's tile64w8, the default since the
// H100 run of 2026-12-07's fifth session: 7.1 against tile64's 8.5 us; the prefix's flash, the default
// since the seventh: docs/gpu.md) unless VLA_EDGE_CUDA_ATTENTION names another (split128, tile64, tile32,
// tile64w8, tile128w8, flash: A/B runs), or the loop's own switch `own` does (the prefix loop's
// VLA_EDGE_CUDA_PREFIX_ATTENTION, read first). A tile form needs its shared memory allowed before its first launch (here, for the
// instantiation at head_dim); a form the device cannot hold runs as tile64w8, and where even that does
// not fit it throws. `static`: it sets the
// attribute on the calling translation unit's own kernel, the one its launches run (tile_kernel_for says why).
static inline expert_kernels::AttentionForm prepare_attention(
    const char* who, int device, int head_dim, const char* own = nullptr,
    expert_kernels::AttentionForm preferred = expert_kernels::AttentionForm::tile64w8) {
    using expert_kernels::AttentionForm;
    const char* v = own && std::getenv(own) ? std::getenv(own) : std::getenv("VLA_EDGE_CUDA_ATTENTION");
    AttentionForm form = preferred;
    for (AttentionForm other : {AttentionForm::split, AttentionForm::tile64, AttentionForm::tile32, AttentionForm::tile64w8,
                                AttentionForm::tile128w8, AttentionForm::flash})
        if (v && !std::strcmp(v, expert_kernels::form_name(other))) form = other;
    if (form == AttentionForm::split) return form;
    expert_kernels::TileKernel tile = form == AttentionForm::flash ? expert_kernels::flash_kernel_for(head_dim)
                                                                   : expert_kernels::tile_kernel_for(head_dim, form);
    int optin = 0;
    loop_check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), who, "device attributes");
    if (form != AttentionForm::tile64w8 && static_cast<size_t>(optin) < tile.smem) {
        // a form asked for that the device cannot hold runs as the default form (describe() names it):
        // tile128w8's 182 KB at head_dim 256 only fit Hopper's 227 KB, not Ampere's and Orin's 163 KB
        // nor the 99 KB of compute capability 8.6 / 8.9 / 12.x (the others need no more than tile64w8)
        form = AttentionForm::tile64w8;
        tile = expert_kernels::tile_kernel_for(head_dim, form);
    }
    if (static_cast<size_t>(optin) < tile.smem) {
        throw std::runtime_error(std::string(who) + ": attention needs " + std::to_string(tile.smem) +
                                 " bytes of shared memory per block; the device allows " + std::to_string(optin));
    }
    allow_shared_memory(who, tile);
    return form;
}

// The flash form's sizing on `device`: its SMs, and VLA_EDGE_CUDA_FLASH_SPLITS (A/B runs; 1 to 64), else 0.
inline expert_kernels::FlashSizing flash_sizing(const char* who, int device) {
    expert_kernels::FlashSizing sizing;
    loop_check(cudaDeviceGetAttribute(&sizing.sms, cudaDevAttrMultiProcessorCount, device), who, "device attributes");
    const char* v = std::getenv("VLA_EDGE_CUDA_FLASH_SPLITS");
    sizing.forced = v ? std::max(0, std::min(64, std::atoi(v))) : 0;
    return sizing;
}

// Warps per query row of the tile forms' attention merge (launch_attention_merge; 0 for the split
// form's own merge): VLA_EDGE_CUDA_MERGE_WARPS=1 or 2, else the loop's `fallback`. The expert loop's is
// two (400 query rows: 3.0 against 3.9 us), the prefix loop's one (4,656 rows, enough warps to hide the
// loads already: 19.4 against 21.5 us with two); H100 kernel bench, 2026-12-07 (docs/gpu.md).
static inline int merge_warps_for(expert_kernels::AttentionForm form, int fallback) {
    if (form == expert_kernels::AttentionForm::split) return 0;
    const char* v = std::getenv("VLA_EDGE_CUDA_MERGE_WARPS");
    if (v && !std::strcmp(v, "1")) return 1;
    if (v && !std::strcmp(v, "2")) return 2;
    return fallback;
}

// Whether the norms hold their rows in registers (ada_norm_kernel, layer_norm_kernel: `vec`): yes
// unless VLA_EDGE_CUDA_VECTOR_NORMS=0 (the default since the H100 run of 2026-12-07: 1.8 against
// 2.9 us per adaptive norm, 2.8 against 4.0 us per vision layer norm).
inline bool vector_norms_wanted() { return loop_switch("VLA_EDGE_CUDA_VECTOR_NORMS", true); }

// The forms a Gemma loop runs, for its describe(): e.g. "attention tile64w8; merge 2 warps per row; 4
// product shapes timed cold: 3 cuBLASLt, 1 cuBLAS default; vector norms" (no merge for the split
// form, whose merge is its own).
inline std::string loop_forms_note(expert_kernels::AttentionForm attention, int merge_warps, const std::string& products,
                                   bool vector_norms, bool pdl) {
    const char* merge = merge_warps == 0 ? "" : merge_warps == 1 ? "merge 1 warp per row; " : "merge 2 warps per row; ";
    return std::string("attention ") + expert_kernels::form_name(attention) + "; " + merge + products +
           (vector_norms ? "; vector norms" : "") + (pdl ? "; programmatic launches" : "");
}

// Whether a loop launches its kernels with programmatic dependent launch (expert_kernels.cuh,
// launch_kernel): VLA_EDGE_CUDA_PDL=1 on a device of compute capability 9.0 or newer; read when the
// loop is made. Opt-in: in the loop A/B it was 2% faster at 326-582 prefix tokens and 2-3% slower at
// 838 and for a batch of two (H100, 2026-12-07; docs/gpu.md).
inline bool pdl_wanted(const char* who, int device) {
    if (!loop_switch("VLA_EDGE_CUDA_PDL", false)) return false;
    int major = 0;
    loop_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), who, "device attributes");
    return major >= 9;
}

// `w` is a BF16 rows x cols matrix stored `stride` wide; the error names what it is instead.
inline void loop_require_bf16(const char* who, const std::string& what, const CudaMatrix& w, int64_t rows, int64_t cols,
                              int64_t stride) {
    if (w.data && w.type == CudaElem::bf16 && w.rows == rows && w.cols == cols && w.stride == stride) return;
    auto shape = [](int64_t r, int64_t c, int64_t st) {
        return std::to_string(r) + " x " + std::to_string(c) + " stored " + std::to_string(st) + " wide";
    };
    const char* type = w.type == CudaElem::f32 ? "F32" : w.type == CudaElem::f16 ? "F16" : "BF16";
    throw std::runtime_error(std::string(who) + ": " + what + " is " + type + " " + shape(w.rows, w.cols, w.stride) +
                             "; it must be a BF16 " + shape(rows, cols, stride) + " matrix");
}

// Each observation's key range [bases[b], bases[b] + keys[b]) lies in the cache's `cache_rows`, up to
// the next multiple of 16 rows the attention kernels read (finite there: zeroed or written).
inline void loop_require_ranges(const char* who, const std::vector<int64_t>& bases, const std::vector<int>& keys,
                                int64_t cache_rows) {
    if (bases.empty() || bases.size() != keys.size()) throw std::invalid_argument(std::string(who) + ": one base per observation");
    for (size_t b = 0; b < bases.size(); ++b) {
        if (bases[b] + (keys[b] + 15) / 16 * 16 > cache_rows) throw std::invalid_argument(std::string(who) + ": K/V range past the cache");
    }
}

// The index arrays a captured shape reads, for observations whose tokens are [first[b], first[b] +
// count[b]) of the cache range starting at bases[b]: pos[T] (positions), rows[T] (cache rows), base[B],
// keys[B] (first + count: every key a token attends to).
inline std::vector<int> token_indices(const std::vector<int>& first, const std::vector<int>& count,
                                      const std::vector<int64_t>& bases) {
    std::vector<int> ints;
    for (size_t b = 0; b < bases.size(); ++b)
        for (int j = 0; j < count[b]; ++j) ints.push_back(first[b] + j);
    for (size_t b = 0; b < bases.size(); ++b)
        for (int j = 0; j < count[b]; ++j) ints.push_back(static_cast<int>(bases[b] + first[b] + j));
    for (size_t b = 0; b < bases.size(); ++b) ints.push_back(static_cast<int>(bases[b]));
    for (size_t b = 0; b < bases.size(); ++b) ints.push_back(first[b] + count[b]);
    return ints;
}

// A loop's activation buffers: each zero-filled when made (padding columns of the products' inputs
// stay zero), all freed together when they must grow.
class LoopBuffers {
  public:
    explicit LoopBuffers(const char* who) : who_(who) {}
    ~LoopBuffers() { release(); }
    LoopBuffers(const LoopBuffers&) = delete;
    LoopBuffers& operator=(const LoopBuffers&) = delete;

    template <typename T>
    void alloc(T*& p, int64_t elements) {
        loop_check(cudaMalloc(reinterpret_cast<void**>(&p), elements * sizeof(T)), who_, "allocating activations");
        owned_.push_back(p);
        loop_check(cudaMemset(p, 0, elements * sizeof(T)), who_, "clearing activations");
        // the memset runs on the legacy stream, which the loops' non-blocking streams do not wait for
        loop_check(cudaStreamSynchronize(nullptr), who_, "clearing activations");
    }
    // Frees every buffer; the pointers handed out must be allocated again before use.
    void release() {
        for (void* p : owned_) cudaFree(p);
        owned_.clear();
    }

  private:
    const char* who_;
    std::vector<void*> owned_;
};

// One Gemma stack's layer activations for up to `tokens` tokens: the residual x, the products' F32
// outputs qkv and gu, their BF16 inputs hn, attn and g (stored as wide as the matrices read them), q
// in F16 for attention; and the attention partials for `part_rows` (observation, split, query row)
// triples. Both loops run their layers on these.
class LayerActivations {
  public:
    float *x = nullptr, *qkv = nullptr, *gu = nullptr, *part_o = nullptr;
    __nv_bfloat16 *hn = nullptr, *attn = nullptr, *g = nullptr;
    __half* q16 = nullptr;
    float2* part_ml = nullptr;
    int64_t ld_h = 0, ld_o = 0, ld_f = 0;  // stored input widths of the q/k/v (and gate/up), output, down products
    int tokens = 0;
    int64_t part_rows = 0;
    bool float_gu = true;  // false: the loop writes its gate/up product elsewhere (gu stays null)

    explicit LayerActivations(const char* who) : who_(who), buffers_(who) {}

    // The stored input widths, from layer 0's q/k/v, output and down matrices.
    void set_widths(const CudaStackShape& s, const CudaMatrix& qkv_w, const CudaMatrix& out_w, const CudaMatrix& down_w) {
        if (qkv_w.stride < s.hidden || out_w.stride < int64_t{s.heads} * s.head_dim || down_w.stride < s.ffn) {
            throw std::runtime_error(std::string(who_) + ": layer 0's matrices are narrower than their inputs");
        }
        ld_h = qkv_w.stride;
        ld_o = out_w.stride;
        ld_f = down_w.stride;
    }

    // Room for T tokens and `rows` partial rows. Where either falls short, every buffer is made
    // again (zero-filled), the loop's own ones by `more(buffers, T)`, and true is returned: graphs
    // that point at the old buffers must go.
    bool reserve(const CudaStackShape& s, int T, int64_t rows, const std::function<void(LoopBuffers&, int)>& more = {}) {
        if (T <= tokens && rows <= part_rows) return false;
        T = std::max(T, tokens);
        rows = std::max(rows, part_rows);
        buffers_.release();
        tokens = 0;  // until every buffer is made again
        part_rows = 0;
        buffers_.alloc(x, int64_t{T} * s.hidden);
        buffers_.alloc(qkv, int64_t{T} * (s.heads + 2) * s.head_dim);
        if (float_gu) buffers_.alloc(gu, int64_t{T} * 2 * s.ffn);
        buffers_.alloc(hn, T * ld_h);
        buffers_.alloc(attn, T * ld_o);
        buffers_.alloc(g, T * ld_f);
        buffers_.alloc(q16, int64_t{T} * s.heads * s.head_dim);
        buffers_.alloc(part_o, rows * s.head_dim);
        buffers_.alloc(part_ml, rows);
        if (more) more(buffers_, T);
        tokens = T;
        part_rows = rows;
        return true;
    }

  private:
    const char* who_;
    LoopBuffers buffers_;
};

// What `enqueue` puts on `stream`, captured into an executable graph. A failed capture is ended and
// freed before the error goes on.
inline cudaGraphExec_t capture_graph(cudaStream_t stream, const char* who, const std::function<void()>& enqueue) {
    cudaGraph_t graph = nullptr;
    loop_check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), who, "beginning graph capture");
    try {
        enqueue();
    } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
    }
    loop_check(cudaStreamEndCapture(stream, &graph), who, "ending graph capture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    loop_check(made, who, "instantiating the graph");
    return exec;
}

// A non-blocking stream on the current device with a cuBLAS handle bound to it and a fixed workspace:
// cuBLAS must not allocate while a graph is being captured.
struct LoopStream {
    static constexpr size_t kWorkspace = size_t{32} << 20;
    const char* who;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    void* workspace = nullptr;

    explicit LoopStream(const char* name) : who(name) {
        try {
            loop_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), who, "creating a stream");
            loop_check(cublasCreate(&blas), who, "creating a cuBLAS handle");
            loop_check(cublasSetStream(blas, stream), who, "cuBLAS stream");
            loop_check(cudaMalloc(&workspace, kWorkspace), who, "allocating cuBLAS workspace");
            loop_check(cublasSetWorkspace(blas, workspace, kWorkspace), who, "cuBLAS workspace");
        } catch (...) {
            release();
            throw;
        }
    }
    ~LoopStream() { release(); }
    LoopStream(const LoopStream&) = delete;
    LoopStream& operator=(const LoopStream&) = delete;

    // y[t] (+)= W x[t] for every token t: BF16 inputs, float32 accumulation and output, cuBLAS's
    // default algorithm (ggml-CUDA's call for a BF16 matrix, which rounds its output to BF16). y's rows
    // lie `ldy` floats apart (0: W.rows, packed), so that several products can fill one wider row.
    void product(const CudaMatrix& W, const __nv_bfloat16* in, int T, float* y, float beta, int64_t ldy = 0) const {
        gemm(W, in, T, y, CUDA_R_32F, beta, ldy ? ldy : W.rows, "layer product");
    }

    // y[t] = W x[t] rounded to BF16 (float32 accumulation): half the bytes of a float32 output, for
    // a product whose reader takes BF16; the rounding ggml-CUDA's BF16 products make.
    void product_bf16(const CudaMatrix& W, const __nv_bfloat16* in, int T, __nv_bfloat16* y) const {
        gemm(W, in, T, y, CUDA_R_16BF, 0.0f, W.rows, "layer product (BF16 out)");
    }

  private:
    void gemm(const CudaMatrix& W, const __nv_bfloat16* in, int T, void* y, cudaDataType_t y_type, float beta, int64_t ldy,
              const char* what) const {
        const float alpha = 1.0f;
        const int rows = static_cast<int>(W.rows), stride = static_cast<int>(W.stride);
        loop_check(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, T, stride, &alpha, W.data, CUDA_R_16BF, stride, in,
                                CUDA_R_16BF, stride, &beta, y, y_type, static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT),
                   who, what);
    }

    void release() {
        if (workspace) cudaFree(workspace);
        if (blas) cublasDestroy(blas);
        if (stream) cudaStreamDestroy(stream);
        workspace = nullptr;
        blas = nullptr;
        stream = nullptr;
    }
};

// One executable graph per input shape, each with the small index arrays its kernels read
// (positions, cache rows, ...), uploaded once when it is captured.
class CapturedShapes {
  public:
    explicit CapturedShapes(const char* who) : who_(who) {}
    ~CapturedShapes() { clear(); }
    CapturedShapes(const CapturedShapes&) = delete;
    CapturedShapes& operator=(const CapturedShapes&) = delete;

    // The key of an input shape: each observation's prefix length and cache base.
    static std::vector<int64_t> key_of(const std::vector<int>& n_prefix, const std::vector<int64_t>& bases) {
        std::vector<int64_t> key(n_prefix.begin(), n_prefix.end());
        key.insert(key.end(), bases.begin(), bases.end());
        return key;
    }
    size_t size() const { return shapes_.size(); }
    bool has(const std::vector<int64_t>& key) const { return shapes_.count(key) > 0; }
    // Drops every graph (the buffers they point at are about to go).
    void clear() {
        for (auto& [key, shape] : shapes_) {
            if (shape.exec) cudaGraphExecDestroy(shape.exec);
            if (shape.ints) cudaFree(shape.ints);
        }
        shapes_.clear();
    }
    // The graph for `key`; the first time, `ints` go to the device (none: `enqueue` gets null) and
    // `enqueue(device ints)` is captured on `io`'s stream.
    cudaGraphExec_t get(const std::vector<int64_t>& key, const std::vector<int>& ints, const LoopStream& io,
                        const std::function<void(const int*)>& enqueue) {
        const auto it = shapes_.find(key);
        if (it != shapes_.end()) return it->second.exec;
        Shape shape;
        if (!ints.empty()) {
            loop_check(cudaMalloc(reinterpret_cast<void**>(&shape.ints), ints.size() * sizeof(int)), who_,
                       "allocating shape indices");
        }
        try {
            if (!ints.empty()) {
                loop_check(cudaMemcpy(shape.ints, ints.data(), ints.size() * sizeof(int), cudaMemcpyHostToDevice), who_,
                           "uploading shape indices");
                // from pageable memory cudaMemcpy may return before the copy lands, and the loop's
                // non-blocking stream would not wait for it
                loop_check(cudaStreamSynchronize(nullptr), who_, "uploading shape indices");
            }
            shape.exec = capture_graph(io.stream, who_, [&] { enqueue(shape.ints); });
        } catch (...) {
            cudaFree(shape.ints);
            throw;
        }
        shapes_.emplace(key, shape);
        return shape.exec;
    }

  private:
    struct Shape {
        cudaGraphExec_t exec = nullptr;
        int* ints = nullptr;
    };
    const char* who_;
    std::map<std::vector<int64_t>, Shape> shapes_;
};

}  // namespace vla_edge
