#include "gguf_weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cpu_extra_buffers.h"
#include "device_caps.h"
#include "quantize.h"
#include "ggml-alloc.h"

#include "ggml-cpu.h"

namespace vla_edge {

namespace {
// Bytes of `t` as the file stores it (its type may have been widened for the device).
size_t stored_bytes(ggml_type stored, const ggml_tensor* t) { return ggml_row_size(stored, t->ne[0]) * ggml_nrows(t); }

std::runtime_error fail(const std::string& path, const std::string& what) {
    return std::runtime_error(path + ": " + what);
}

// Reads [off, off + n) of `fd` into dst (page cache -> private memory; the file pages are not
// mapped into this process, so they do not count towards its resident set).
void read_exact(int fd, size_t off, size_t n, uint8_t* dst, const std::string& path) {
    while (n > 0) {
        const ssize_t got = ::pread(fd, dst, std::min<size_t>(n, size_t(1) << 30), static_cast<off_t>(off));
        if (got <= 0) throw fail(path, std::string("read failed: ") + (got < 0 ? std::strerror(errno) : "unexpected end of file"));
        dst += got;
        off += static_cast<size_t>(got);
        n -= static_cast<size_t>(got);
    }
}

}  // namespace

CpuWeights cpu_weights_from_string(const std::string& value) {
    if (value == "mapped") return CpuWeights::mapped;
    if (value == "anonymous") return CpuWeights::anonymous;
    if (value == "repacked") return CpuWeights::repacked;
    throw std::invalid_argument("cpu_weights must be 'mapped', 'anonymous' or 'repacked', got '" + value + "'");
}

DeviceWeights device_weights_from_string(const std::string& value) {
    if (value == "auto") return DeviceWeights::automatic;
    if (value == "stored") return DeviceWeights::stored;
    if (value == "f16") return DeviceWeights::f16;
    if (value == "bf16") return DeviceWeights::bf16;
    throw std::invalid_argument("device_weights must be 'auto', 'stored', 'f16' or 'bf16', got '" + value + "'");
}

const char* to_string(CpuWeights mode) {
    switch (mode) {
        case CpuWeights::mapped: return "mapped";
        case CpuWeights::anonymous: return "anonymous";
        case CpuWeights::repacked: return "repacked";
    }
    return "?";
}

GgufWeights::GgufWeights(const std::string& path, ggml_backend_t backend, DeviceWeights device_weights,
                         CpuWeights cpu_weights, FuseMatrices fuse)
    : path_(path), cpu_weights_(ggml_backend_is_cpu(backend) ? cpu_weights : CpuWeights::mapped) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw fail(path, std::string("cannot open weights file: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
        ::close(fd);
        throw fail(path, "empty or unreadable weights file");
    }
    file_size_ = static_cast<size_t>(st.st_size);
    try {
        if (cpu_weights_ == CpuWeights::anonymous) {
            read_into_anonymous(fd);
        } else {
            map_ = ::mmap(nullptr, file_size_, PROT_READ, MAP_SHARED, fd, 0);
            if (map_ == MAP_FAILED) {
                map_ = nullptr;
                throw fail(path, "mmap failed");
            }
        }
        load(backend, device_weights, fuse);
        if (cpu_weights_ == CpuWeights::repacked) load_cpu(fd);
    } catch (...) {
        ::close(fd);
        release();
        throw;
    }
    ::close(fd);
}

void GgufWeights::read_into_anonymous(int fd) {
    map_ = ::mmap(nullptr, file_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map_ == MAP_FAILED) {
        map_ = nullptr;
        throw fail(path_, "cannot allocate " + std::to_string(file_size_) + " bytes of anonymous memory for the weights");
    }
    advise_huge_pages(map_, file_size_);
    read_exact(fd, 0, file_size_, static_cast<uint8_t*>(map_), path_);
}

// The embedding table is looked up row by row on the host; it never goes through a device product.
constexpr const char* kHostTable = "embed.weight";

ggml_type GgufWeights::choose_widening(ggml_backend_t backend, DeviceWeights mode) {
    switch (mode) {
        case DeviceWeights::stored: device_weights_note_ = "stored (asked for)"; return GGML_TYPE_COUNT;
        case DeviceWeights::f16: device_weights_note_ = "f16 (asked for)"; return GGML_TYPE_F16;
        case DeviceWeights::bf16: device_weights_note_ = "bf16 (asked for)"; return GGML_TYPE_BF16;
        case DeviceWeights::automatic: break;
    }
    size_t widened = 0;  // device bytes with every quantised matrix as 16-bit values
    for (const auto& [name, t] : by_name_) {
        widened += ggml_is_quantized(t->type) && name != kHostTable ? ggml_nelements(t) * ggml_type_size(GGML_TYPE_F16)
                                                                    : ggml_nbytes(t);
    }
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    size_t free = 0, total = 0;
    if (dev) ggml_backend_dev_memory(dev, &free, &total);
    const bool discrete = dev && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU;
    return automatic_widening(widened, free, total, discrete, cuda_compute_capability(backend), &device_weights_note_);
}

ggml_type automatic_widening(size_t widened_bytes, size_t free_bytes, size_t total_bytes, bool discrete_gpu,
                             int compute_capability, std::string* note) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    const bool bf16 = compute_capability >= 80;  // BF16 tensor cores
    const char* wide = bf16 ? "bf16" : "f16";
    char facts[200];
    std::snprintf(facts, sizeof facts, "%s weights %.2f GiB, device free %.2f of %.2f GiB, compute capability %d.%d",
                  bf16 ? "BF16" : "F16", widened_bytes / gib, free_bytes / gib, total_bytes / gib,
                  compute_capability / 10, compute_capability % 10);
    // room to spare: compute buffers, the KV cache, cuBLAS workspaces and other processes' needs
    const size_t spare = std::max<size_t>(static_cast<size_t>(2 * gib), total_bytes / 10);
    if (!discrete_gpu) {
        *note = std::string("stored (auto: integrated GPU, its memory is the host's; ") + facts + ")";
        return GGML_TYPE_COUNT;
    }
    if (widened_bytes + spare > free_bytes) {
        *note = std::string("stored (auto: the ") + wide + " copy does not fit with 2 GiB / 10% to spare; " + facts + ")";
        return GGML_TYPE_COUNT;
    }
    *note = std::string(wide) + " (auto: discrete GPU with room" + (bf16 ? " and BF16 tensor cores; " : "; ") + facts + ")";
    return bf16 ? GGML_TYPE_BF16 : GGML_TYPE_F16;
}

void GgufWeights::load(ggml_backend_t backend, DeviceWeights device_weights, FuseMatrices fuse) {
    const std::string& path = path_;
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/&ctx_};
    gguf_ = gguf_init_from_file(path.c_str(), params);
    if (!gguf_) throw fail(path, "not a readable GGUF file (bad magic, version or header)");
    const size_t data_offset = gguf_get_data_offset(gguf_);
    const int64_t n = gguf_get_n_tensors(gguf_);
    for (int64_t i = 0; i < n; ++i) {
        const char* name = gguf_get_tensor_name(gguf_, i);
        ggml_tensor* t = ggml_get_tensor(ctx_, name);
        const size_t off = data_offset + gguf_get_tensor_offset(gguf_, i);
        const size_t nbytes = ggml_nbytes(t);
        if (off + nbytes > file_size_) {
            throw fail(path, "tensor '" + std::string(name) + "' ends at byte " + std::to_string(off + nbytes) +
                                 " but the file has " + std::to_string(file_size_) + " bytes (truncated?)");
        }
        by_name_[name] = t;
        file_offset_[name] = off;
        tensor_bytes_ += nbytes;
    }

    if (ggml_backend_is_cpu(backend)) {
        // Placed in load_cpu (repacked) or here: one buffer over the whole mapping, tensors at their
        // file offsets.
        if (cpu_weights_ == CpuWeights::repacked) return;
        buffer_ = ggml_backend_cpu_buffer_from_ptr(map_, file_size_);
        for (auto& [name, t] : by_name_) {
            ggml_backend_tensor_alloc(buffer_, t, static_cast<uint8_t*>(map_) + file_offset_[name]);
        }
        device_bytes_ = tensor_bytes_;
        device_weights_note_ = "stored (CPU)";
    } else {
        const ggml_type widen_to = choose_widening(backend, device_weights);
        const bool fuse_matrices = fuse != FuseMatrices::off;  // automatic: on off the CPU (measured faster with both types)
        std::unordered_map<std::string, ggml_type> stored;
        for (auto& [name, t] : by_name_) {
            stored[name] = t->type;
            const bool widen = widen_to != GGML_TYPE_COUNT && name != kHostTable &&
                               (ggml_is_quantized(t->type) || (widen_to == GGML_TYPE_BF16 && t->type == GGML_TYPE_F16));
            if (widen) {
                t->type = widen_to;  // re-derive the strides for the wider type before allocation
                t->nb[0] = ggml_type_size(widen_to);
                for (int d = 1; d < GGML_MAX_DIMS; ++d) t->nb[d] = t->nb[d - 1] * t->ne[d - 1];
            }
        }
        if (fuse_matrices) place_fused(backend);  // the members get their addresses first
        buffer_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);  // then every tensor still without one
        if (!buffer_) throw fail(path, "cannot allocate device memory for the weights");
        const long page = ::sysconf(_SC_PAGESIZE);
        for (auto& [name, t] : by_name_) {
            uint8_t* src = static_cast<uint8_t*>(map_) + file_offset_[name];
            upload(t, stored[name], src);
            device_bytes_ += ggml_nbytes(t);
            if (name == kHostTable) continue;
            // Drop the uploaded pages from this process (a shared read-only file mapping: they are
            // re-read from the file if ever touched again); whole pages inside the tensor only.
            const uintptr_t begin = (reinterpret_cast<uintptr_t>(src) + page - 1) / page * page;
            const uintptr_t end = (reinterpret_cast<uintptr_t>(src) + stored_bytes(stored[name], t)) / page * page;
            if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
        }
    }
    ggml_backend_buffer_set_usage(buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
}

void GgufWeights::place_fused(ggml_backend_t backend) {
    struct Group {
        std::string name;
        std::vector<ggml_tensor*> members;
    };
    std::vector<Group> groups;
    for (const char* stack : {"pali.blk.", "action.blk."}) {
        for (int i = 0; find(stack + std::to_string(i) + ".attn_q.weight"); ++i) {
            const std::string b = stack + std::to_string(i) + ".";
            groups.push_back({b + "attn_qkv.weight", {find(b + "attn_q.weight"), find(b + "attn_k.weight"), find(b + "attn_v.weight")}});
            groups.push_back({b + "ffn_gate_up.weight", {find(b + "ffn_gate.weight"), find(b + "ffn_up.weight")}});
        }
    }
    // SigLIP's q/k/v carry biases: the fused bias lets one add follow the one product. Opt-in
    // (VLA_EDGE_FUSE_VISION_QKV=1): the forms check passed, but two same-run A/Bs (H100, H200) found it
    // 0.2-0.3 ms faster at 1-2 views and not at 3 (docs/gpu.md).
    const char* fuse_vision = std::getenv("VLA_EDGE_FUSE_VISION_QKV");
    const bool vision = fuse_vision && std::string(fuse_vision) == "1";
    for (int i = 0; vision && find("v.blk." + std::to_string(i) + ".attn_q.weight"); ++i) {
        const std::string b = "v.blk." + std::to_string(i) + ".";
        for (const char* part : {"weight", "bias"}) {
            const std::string p = std::string(".") + part;
            groups.push_back({b + "attn_qkv" + p, {find(b + "attn_q" + p), find(b + "attn_k" + p), find(b + "attn_v" + p)}});
        }
    }
    // Members must be plain matrices of one type and input width; quantised rows a multiple of
    // ggml-CUDA's 512-element row padding (its kernels may read a row's padding, which must not be
    // the next member's first row of a different layout).
    auto fusable = [](const Group& g) {
        for (const ggml_tensor* m : g.members) {
            if (!m || m->type != g.members[0]->type || m->ne[0] != g.members[0]->ne[0] || m->ne[2] != 1 || m->ne[3] != 1 ||
                (ggml_is_quantized(m->type) && m->ne[0] % 512 != 0) || ggml_nbytes(m) % 256 != 0) {
                return false;
            }
        }
        return true;
    };
    std::vector<Group> planned;
    for (Group& g : groups)
        if (fusable(g)) planned.push_back(std::move(g));
    if (planned.empty()) return;
    ggml_init_params p{ggml_tensor_overhead() * planned.size(), nullptr, /*no_alloc=*/true};
    fused_ctx_ = ggml_init(p);
    std::vector<ggml_tensor*> made;
    for (const Group& g : planned) {
        int64_t rows = 0;
        for (const ggml_tensor* m : g.members) rows += m->ne[1];
        ggml_tensor* f = ggml_new_tensor_2d(fused_ctx_, g.members[0]->type, g.members[0]->ne[0], rows);
        ggml_set_name(f, g.name.c_str());
        made.push_back(f);
    }
    fused_buffer_ = ggml_backend_alloc_ctx_tensors(fused_ctx_, backend);
    if (!fused_buffer_) throw fail(path_, "cannot allocate device memory for the fused weight matrices");
    ggml_backend_buffer_set_usage(fused_buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    for (size_t i = 0; i < planned.size(); ++i) {
        size_t offset = 0;
        for (ggml_tensor* m : planned[i].members) {
            ggml_backend_tensor_alloc(fused_buffer_, m, static_cast<uint8_t*>(made[i]->data) + offset);
            offset += ggml_nbytes(m);
        }
        fused_[planned[i].name] = made[i];
    }
}

ggml_tensor* GgufWeights::fused(const std::string& name) const {
    auto it = fused_.find(name);
    return it == fused_.end() ? nullptr : it->second;
}

void GgufWeights::load_cpu(int fd) {
    // Which matrices go to which extra buffer type (first one that runs them wins).
    std::map<ggml_backend_buffer_type_t, std::vector<std::pair<std::string, ggml_tensor*>>> placed;
    for (auto& [name, t] : by_name_) {
        if (name == kHostTable) continue;
        if (ggml_backend_buffer_type_t buft = cpu_extra_buffer_for(t)) placed[buft].emplace_back(name, t);
    }
    // Everything else: one buffer over the mapping, as in the mapped mode.
    buffer_ = ggml_backend_cpu_buffer_from_ptr(map_, file_size_);
    ggml_backend_buffer_set_usage(buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    std::vector<std::pair<std::string, ggml_tensor*>> jobs;
    for (auto& [buft, tensors] : placed) {
        const size_t align = ggml_backend_buft_get_alignment(buft);
        size_t total = align;
        for (auto& [name, t] : tensors) total += GGML_PAD(ggml_backend_buft_get_alloc_size(buft, t), align);
        ggml_backend_buffer_t buf = ggml_backend_buft_alloc_buffer(buft, total);
        if (!buf) throw fail(path_, "cannot allocate " + std::to_string(total) + " bytes for repacked weights");
        extra_buffers_.push_back(buf);
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        advise_huge_pages(ggml_backend_buffer_get_base(buf), ggml_backend_buffer_get_size(buf));
        ggml_tallocr talloc = ggml_tallocr_new(buf);
        for (auto& [name, t] : tensors) {
            if (ggml_tallocr_alloc(&talloc, t) != GGML_STATUS_SUCCESS) throw fail(path_, "cannot place '" + name + "'");
            jobs.emplace_back(name, t);
            repacked_bytes_ += ggml_nbytes(t);
            ++repacked_tensors_;
        }
    }
    for (auto& [name, t] : by_name_) {
        if (!t->buffer) ggml_backend_tensor_alloc(buffer_, t, static_cast<uint8_t*>(map_) + file_offset_[name]);
    }
    // ggml logs one debug line per repacked tensor (hundreds on a full pack): drop debug lines
    // while repacking, keep everything else on ggml's default logger.
    ggml_log_set([](ggml_log_level level, const char* text, void*) {
        if (level != GGML_LOG_LEVEL_DEBUG) fputs(text, stderr);
    }, nullptr);
    // Repack: each tensor is read from the file into a private scratch row and re-laid out by
    // ggml's set_tensor; tensors are independent, so the cores share the work.
    std::atomic<size_t> next{0};
    std::string error;
    std::atomic<bool> failed{false};
    auto worker = [&]() {
        std::vector<uint8_t> scratch;
        for (size_t i = next++; i < jobs.size() && !failed; i = next++) {
            ggml_tensor* t = jobs[i].second;
            scratch.resize(ggml_nbytes(t));
            try {
                read_exact(fd, file_offset_[jobs[i].first], scratch.size(), scratch.data(), path_);
            } catch (const std::exception& e) {
                if (!failed.exchange(true)) error = e.what();
                return;
            }
            ggml_backend_tensor_set(t, scratch.data(), 0, scratch.size());
        }
    };
    const unsigned n_workers = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < n_workers; ++i) pool.emplace_back(worker);
    worker();
    for (auto& th : pool) th.join();
    ggml_log_set(nullptr, nullptr);
    if (failed) throw std::runtime_error(error);
    device_bytes_ = tensor_bytes_;
}

void GgufWeights::upload(ggml_tensor* t, ggml_type stored_type, const uint8_t* src) const {
    if (t->type == stored_type) {
        ggml_backend_tensor_set(t, src, 0, ggml_nbytes(t));
        return;
    }
    // Widened: decoded to F16 / BF16 in blocks of rows (~32 MB) on every hardware thread, each block
    // uploaded once (single-threaded, a full-size pack took 7 s on the H100 machine's host).
    const int64_t n = t->ne[0], rows = ggml_nrows(t);
    const size_t stored_row = ggml_row_size(stored_type, n);
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(rows, (int64_t{16} << 20) / n));
    const int threads = static_cast<int>(std::clamp<unsigned>(std::thread::hardware_concurrency(), 1u, 16u));
    std::vector<uint16_t> wide(static_cast<size_t>(n) * block);  // F16 and BF16 are both 16 bits
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
        const int64_t nr = std::min<int64_t>(block, rows - r0);
        widen_rows(stored_type, src + stored_row * r0, t->type, wide.data(), nr, n, threads);
        ggml_backend_tensor_set(t, wide.data(), r0 * t->nb[1], nr * t->nb[1]);
    }
}

GgufWeights::~GgufWeights() { release(); }

void GgufWeights::release() {
    for (ggml_backend_buffer_t b : extra_buffers_) ggml_backend_buffer_free(b);
    extra_buffers_.clear();
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (fused_buffer_) ggml_backend_buffer_free(fused_buffer_);
    if (fused_ctx_) ggml_free(fused_ctx_);
    fused_buffer_ = nullptr;
    fused_ctx_ = nullptr;
    fused_.clear();
    if (ctx_) ggml_free(ctx_);
    if (gguf_) gguf_free(gguf_);
    if (map_) ::munmap(map_, file_size_);
    buffer_ = nullptr;
    ctx_ = nullptr;
    gguf_ = nullptr;
    map_ = nullptr;
}

ggml_tensor* GgufWeights::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

ggml_tensor* GgufWeights::get(const std::string& name) const {
    ggml_tensor* t = find(name);
    if (!t) throw fail(path_, "tensor '" + name + "' is missing");
    return t;
}

const uint8_t* GgufWeights::host_data(const std::string& name) const {
    get(name);
    return static_cast<const uint8_t*>(map_) + file_offset_.at(name);
}

bool GgufWeights::has_key(const char* key) const { return gguf_find_key(gguf_, key) >= 0; }

uint32_t GgufWeights::u32(const char* key, uint32_t fallback) const {
    const int64_t id = gguf_find_key(gguf_, key);
    if (id < 0) return fallback;
    switch (gguf_get_kv_type(gguf_, id)) {
        case GGUF_TYPE_UINT32: return gguf_get_val_u32(gguf_, id);
        case GGUF_TYPE_INT32: return static_cast<uint32_t>(gguf_get_val_i32(gguf_, id));
        case GGUF_TYPE_UINT64: return static_cast<uint32_t>(gguf_get_val_u64(gguf_, id));
        default: throw fail(path_, std::string("metadata key '") + key + "' is not an integer");
    }
}

float GgufWeights::f32(const char* key, float fallback) const {
    const int64_t id = gguf_find_key(gguf_, key);
    if (id < 0) return fallback;
    switch (gguf_get_kv_type(gguf_, id)) {
        case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(gguf_, id);
        case GGUF_TYPE_FLOAT64: return static_cast<float>(gguf_get_val_f64(gguf_, id));
        default: throw fail(path_, std::string("metadata key '") + key + "' is not a float");
    }
}

std::string GgufWeights::str(const char* key, const std::string& fallback) const {
    const int64_t id = gguf_find_key(gguf_, key);
    if (id < 0) return fallback;
    if (gguf_get_kv_type(gguf_, id) != GGUF_TYPE_STRING) throw fail(path_, std::string("metadata key '") + key + "' is not a string");
    return gguf_get_val_str(gguf_, id);
}

}  // namespace vla_edge
