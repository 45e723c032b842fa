// Memory-mapped GGUF weights: every tensor is loaded once, in place, never copied on the CPU.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"

namespace vla_edge {

// Where a CPU backend keeps the weights (other backends upload them to the device and ignore this).
//   mapped:    tensors point straight into the file mapping (4 KiB page-cache pages, zero copy,
//              shared with other processes mapping the same pack; the fastest load).
//   anonymous: the file is read into anonymous memory advised MADV_HUGEPAGE (transparent huge
//              pages where the kernel allows them: fewer TLB misses, private memory).
//   repacked:  every matrix that ggml's CPU backend can re-lay out for its own gemm kernels (its
//              "extra" buffer types: interleaved Q4_0/Q4_K/Q5_K/Q6_K/Q8_0/... blocks) is copied
//              into such a buffer (anonymous, huge-page advised); the rest stays mapped. Costs a
//              copy at load time, but the pack's file pages are dropped again, so memory stays ~1x.
enum class CpuWeights { mapped, anonymous, repacked };

// Parses "mapped" / "anonymous" / "repacked"; throws std::invalid_argument naming the bad value.
CpuWeights cpu_weights_from_string(const std::string& value);
const char* to_string(CpuWeights mode);

// How quantised matrices are held off the CPU. f16: widened to F16 at upload (cuBLAS tensor-core
// products instead of ggml's quantised kernels, ~3.5x the device memory of those matrices).
// bf16: every quantised *and* F16 matrix widened / converted to BF16: ggml-CUDA has cuBLAS write a
// BF16 product's F32 result directly (F32 accumulation), where an F16 product is accumulated in F16
// and then converted to F32 by one more kernel per product; BF16 keeps 8 mantissa bits to F16's 11.
// automatic: bf16 (f16 before Ampere) on a discrete GPU whose free memory holds the widened weights
// with room to spare (F16 measured 1.4-1.6x faster per chunk than the quantised kernels on
// H100/H200, BF16 1.13x faster than F16 on an H100, docs/gpu.md),
// stored on an integrated GPU (Jetson, GB10: device memory is the host's, so widening would take
// the robot computer's RAM) and wherever the widened copy does not fit.
enum class DeviceWeights { stored, f16, bf16, automatic };
// Parses "auto" / "stored" / "f16" / "bf16"; throws std::invalid_argument naming the bad value.
DeviceWeights device_weights_from_string(const std::string& value);
// Fused q/k/v and gate/up matrices off the CPU (see fused()). automatic: on, with F16 and with the
// stored quantised types alike (same-run A/B on an H100, 2 views: 56.3 -> 51.6 ms quantised, and
// 40.2 -> 35.7 ms F16 on an H200; docs/gpu.md).
enum class FuseMatrices { off, on, automatic };

// DeviceWeights::automatic's rule from the sizes at hand: widen on a discrete GPU whose free memory
// holds the widened weights plus max(2 GiB, 10% of the device) to spare; to BF16 where the GPU has
// BF16 tensor cores (compute capability >= 8.0: Ampere, Orin, Hopper, Blackwell; measured 1.13x
// faster per chunk than F16 on an H100, docs/gpu.md), else to F16. Returns GGML_TYPE_BF16 /
// GGML_TYPE_F16, or GGML_TYPE_COUNT for "keep the stored types"; `note` says what and why.
ggml_type automatic_widening(size_t widened_bytes, size_t free_bytes, size_t total_bytes, bool discrete_gpu,
                             int compute_capability, std::string* note);

class GgufWeights {
  public:
    // Maps `path`; on a CPU backend tensors point straight into the mapping, on other backends
    // (CUDA) they are uploaded once into one device buffer, tensor by tensor, and each tensor's
    // pages are dropped from this process after its upload (only the embedding table, read on the
    // host, stays mapped in use), so host memory does not hold a second copy of the weights.
    // device_weights, fuse (other backends only): see DeviceWeights, FuseMatrices. Throws
    // std::runtime_error with the file name and the problem (missing file, not GGUF, truncated).
    // cpu_weights: see CpuWeights (CPU backends only).
    GgufWeights(const std::string& path, ggml_backend_t backend, DeviceWeights device_weights = DeviceWeights::stored,
                CpuWeights cpu_weights = CpuWeights::mapped, FuseMatrices fuse = FuseMatrices::off);
    ~GgufWeights();
    GgufWeights(const GgufWeights&) = delete;
    GgufWeights& operator=(const GgufWeights&) = delete;

    ggml_tensor* find(const std::string& name) const;  // nullptr if absent
    ggml_tensor* get(const std::string& name) const;   // throws naming the tensor if absent
    // Matrices that multiply the same input, laid out one after another in device memory so one
    // product computes them all: "<layer>attn_qkv.weight" ([q; k; v] rows) and
    // "<layer>ffn_gate_up.weight" ([gate; up]) of every LLM and expert layer, and the vision
    // layers' "v.blk.<i>.attn_qkv.weight" / ".bias" (the bias as a [width, 3] matrix), whose members
    // share a type and input width. The members stay addressable under their own names (same bytes, no
    // second copy). nullptr where not fused (CPU backends, mixed types, loaded without fusion).
    ggml_tensor* fused(const std::string& name) const;

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
    size_t repacked_bytes() const { return repacked_bytes_; }      // in ggml's CPU extra buffers
    int repacked_tensors() const { return repacked_tensors_; }
    CpuWeights cpu_weights() const { return cpu_weights_; }
    // How the device weights were chosen: the mode asked for and, for automatic, why.
    const std::string& device_weights_note() const { return device_weights_note_; }

  private:
    void load(ggml_backend_t backend, DeviceWeights device_weights, FuseMatrices fuse);
    // The type matrices are widened to (F16 / BF16), GGML_TYPE_COUNT for none; sets device_weights_note_.
    ggml_type choose_widening(ggml_backend_t backend, DeviceWeights mode);
    void place_fused(ggml_backend_t backend);
    void read_into_anonymous(int fd);
    void load_cpu(int fd);  // repacked: places every tensor
    void upload(ggml_tensor* t, ggml_type stored_type, const uint8_t* src) const;
    void release();

    std::string path_;
    size_t file_size_ = 0;
    size_t tensor_bytes_ = 0;
    size_t device_bytes_ = 0;
    size_t repacked_bytes_ = 0;
    int repacked_tensors_ = 0;
    CpuWeights cpu_weights_ = CpuWeights::mapped;
    std::string device_weights_note_;
    void* map_ = nullptr;  // the file mapping, or (anonymous) the private copy of the file
    std::vector<ggml_backend_buffer_t> extra_buffers_;  // repacked: one per ggml extra buffer type
    gguf_context* gguf_ = nullptr;
    ggml_context* ctx_ = nullptr;
    ggml_backend_buffer_t buffer_ = nullptr;
    ggml_context* fused_ctx_ = nullptr;
    ggml_backend_buffer_t fused_buffer_ = nullptr;
    std::unordered_map<std::string, ggml_tensor*> fused_;
    std::unordered_map<std::string, ggml_tensor*> by_name_;
    std::unordered_map<std::string, size_t> file_offset_;
};

}  // namespace vla_edge
