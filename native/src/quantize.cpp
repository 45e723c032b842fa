#include "quantize.h"

#include <cctype>
#include <stdexcept>

namespace vla_edge {

ggml_type type_from_name(const std::string& name) {
    for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
        const char* n = ggml_type_name(static_cast<ggml_type>(t));
        if (n && name.size() == std::string(n).size()) {
            bool same = true;
            for (size_t i = 0; i < name.size(); ++i) same = same && std::toupper(name[i]) == std::toupper(n[i]);
            if (same) return static_cast<ggml_type>(t);
        }
    }
    throw std::invalid_argument("unknown ggml type '" + name + "'");
}

size_t quantize_rows(ggml_type type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                     const float* importance) {
    const int64_t block = ggml_blck_size(type);
    if (n_per_row % block != 0) {
        throw std::invalid_argument(std::string(ggml_type_name(type)) + " needs rows that are a multiple of " +
                                    std::to_string(block) + " values, got " + std::to_string(n_per_row));
    }
    if (importance == nullptr && ggml_quantize_requires_imatrix(type)) {
        throw std::invalid_argument(std::string(ggml_type_name(type)) + " needs an importance matrix");
    }
    ggml_quantize_init(type);
    return ggml_quantize_chunk(type, src, dst, 0, n_rows, n_per_row, importance);
}

}  // namespace vla_edge
