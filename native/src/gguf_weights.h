// Memory-mapped GGUF weights: every tensor is loaded once, in place, never copied on the CPU.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"

namespace vla_edge {

class GgufWeights {
  public:
    // Maps `path`; on a CPU backend tensors point straight into the mapping, on other backends
    // (CUDA) they are uploaded once into one device buffer, tensor by tensor, and each tensor's
    // pages are dropped from this process after its upload (only the embedding table, read on the
    // host, stays mapped in use), so host memory does not hold a second copy of the weights.
    // widen_to_f16 (other backends only): quantised matrices are uploaded as F16. Throws
    // std::runtime_error with the file name and the problem (missing file, not GGUF, truncated).
    GgufWeights(const std::string& path, ggml_backend_t backend, bool widen_to_f16 = false);
    ~GgufWeights();
    GgufWeights(const GgufWeights&) = delete;
    GgufWeights& operator=(const GgufWeights&) = delete;

    ggml_tensor* find(const std::string& name) const;  // nullptr if absent
    ggml_tensor* get(const std::string& name) const;   // throws naming the tensor if absent

    // Host pointer to a tensor's bytes in the mapping (for host-side lookups like embeddings).
    const uint8_t* host_data(const std::string& name) const;

    bool has_key(const char* key) const;
    uint32_t u32(const char* key, uint32_t fallback) const;
    float f32(const char* key, float fallback) const;
    std::string str(const char* key, const std::string& fallback) const;

    const std::string& path() const { return path_; }
    size_t file_size() const { return file_size_; }
    size_t tensor_bytes() const { return tensor_bytes_; }          // as stored in the file
    size_t device_bytes() const { return device_bytes_; }          // as held by the backend

  private:
    void load(ggml_backend_t backend, bool widen_to_f16);
    void upload(ggml_tensor* t, ggml_type stored_type, const uint8_t* src) const;
    void release();

    std::string path_;
    size_t file_size_ = 0;
    size_t tensor_bytes_ = 0;
    size_t device_bytes_ = 0;
    void* map_ = nullptr;
    gguf_context* gguf_ = nullptr;
    ggml_context* ctx_ = nullptr;
    ggml_backend_buffer_t buffer_ = nullptr;
    std::unordered_map<std::string, ggml_tensor*> by_name_;
    std::unordered_map<std::string, size_t> file_offset_;
};

}  // namespace vla_edge
