#include "cpu_extra_buffers.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace vla_edge {

namespace {
ggml_backend_dev_t cpu_device() { return ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU); }

// Null-terminated list from the CPU backend's registry (empty when the entry point is absent).
const std::vector<ggml_backend_buffer_type_t>& extra_types() {
    static const std::vector<ggml_backend_buffer_type_t> types = [] {
        std::vector<ggml_backend_buffer_type_t> out;
        ggml_backend_dev_t dev = cpu_device();
        if (!dev) return out;
        auto get = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
            ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev), "ggml_backend_dev_get_extra_bufts"));
        if (!get) return out;
        // Only ggml's repack layouts. Its AMX buffer type (Intel AMX CPUs) answers yes to the dummy
        // product but crashed in ggml_backend_amx_mul_mat on this model's products (ggml 0.3.36
        // sources, Xeon with AMX-INT8): not used until that is understood.
        for (ggml_backend_buffer_type_t* b = get(dev); b && *b; ++b) {
            if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) out.push_back(*b);
        }
        return out;
    }();
    return types;
}
}  // namespace

ggml_backend_buffer_type_t cpu_extra_buffer_for(const ggml_tensor* weight) {
    if (ggml_n_dims(weight) != 2 || extra_types().empty()) return nullptr;
    ggml_init_params params{ggml_tensor_overhead() * 4, nullptr, /*no_alloc=*/true};
    ggml_context* ctx = ggml_init(params);
    ggml_tensor w = *weight;  // a copy: the caller's tensor is not touched
    w.view_src = nullptr;
    ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, weight->ne[0], 64);
    ggml_tensor* y = ggml_mul_mat(ctx, &w, x);
    ggml_backend_buffer_type_t found = nullptr;
    for (ggml_backend_buffer_type_t buft : extra_types()) {
        ggml_backend_buffer_t dummy = ggml_backend_buft_alloc_buffer(buft, 0);
        w.buffer = dummy;
        const bool ok = ggml_backend_dev_supports_op(cpu_device(), y);
        ggml_backend_buffer_free(dummy);
        if (ok) {
            found = buft;
            break;
        }
    }
    ggml_free(ctx);
    return found;
}

void advise_huge_pages(void* p, size_t n) {
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
#ifdef MADV_HUGEPAGE
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

}  // namespace vla_edge
