// What our CUDA loops share (expert_loop.cu, prefix_loop.cu): errors that name the loop, a stream with
// its cuBLAS handle and fixed workspace, the BF16 layer product, zero-filled device buffers, and one
// captured CUDA graph per input shape. Included by CUDA sources only.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <functional>
#include <map>
#include <vector>
#include <stdexcept>
#include <string>

#include "cuda_expert_loop.h"  // CudaMatrix

namespace vla_edge {

inline void loop_check(cudaError_t e, const char* who, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string(who) + ": " + what + ": " + cudaGetErrorString(e));
}

inline void loop_check(cublasStatus_t s, const char* who, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(who) + ": " + what + ": " + cublasGetStatusString(s));
}

// Device memory for `elements` values, zero-filled (padding columns of the products' inputs stay zero).
template <typename T>
void loop_alloc(T*& p, int64_t elements, const char* who) {
    loop_check(cudaMalloc(reinterpret_cast<void**>(&p), elements * sizeof(T)), who, "allocating activations");
    loop_check(cudaMemset(p, 0, elements * sizeof(T)), who, "clearing activations");
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
    // default algorithm (the call ggml-CUDA makes for a BF16 matrix).
    void product(const CudaMatrix& W, const __nv_bfloat16* in, int T, float* y, float beta) const {
        const float alpha = 1.0f;
        const int rows = static_cast<int>(W.rows), stride = static_cast<int>(W.stride);
        loop_check(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, T, stride, &alpha, W.data, CUDA_R_16BF, stride, in,
                                CUDA_R_16BF, stride, &beta, y, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   who, "layer product");
    }

    // What `enqueue` puts on the stream, captured into an executable graph. A failed capture is
    // ended and freed before the error goes on.
    cudaGraphExec_t capture(const std::function<void()>& enqueue) const {
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

  private:
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
    // The graph for `key`; the first time, `ints` go to the device and `enqueue(device ints)` is
    // captured on `io`'s stream.
    cudaGraphExec_t get(const std::vector<int64_t>& key, const std::vector<int>& ints, const LoopStream& io,
                        const std::function<void(const int*)>& enqueue) {
        const auto it = shapes_.find(key);
        if (it != shapes_.end()) return it->second.exec;
        Shape shape;
        loop_check(cudaMalloc(reinterpret_cast<void**>(&shape.ints), ints.size() * sizeof(int)), who_,
                   "allocating shape indices");
        try {
            loop_check(cudaMemcpy(shape.ints, ints.data(), ints.size() * sizeof(int), cudaMemcpyHostToDevice), who_,
                       "uploading shape indices");
            shape.exec = io.capture([&] { enqueue(shape.ints); });
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
