#include "quantize.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <thread>
#include <vector>

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

void widen_rows(ggml_type type, const uint8_t* src, ggml_type to, void* dst, int64_t n_rows, int64_t n_per_row,
                int threads) {
    const auto* traits = ggml_get_type_traits(type);
    if (!traits->to_float) throw std::invalid_argument(std::string(ggml_type_name(type)) + " cannot be decoded");
    if (to != GGML_TYPE_F16 && to != GGML_TYPE_BF16) {
        throw std::invalid_argument(std::string("cannot widen to ") + ggml_type_name(to) + ", only to F16 or BF16");
    }
    const size_t stored_row = ggml_row_size(type, n_per_row);
    auto decode = [&](int64_t first, int64_t last) {
        std::vector<float> f32(static_cast<size_t>(n_per_row));
        for (int64_t r = first; r < last; ++r) {
            traits->to_float(src + stored_row * r, f32.data(), n_per_row);
            if (to == GGML_TYPE_F16) {
                ggml_fp32_to_fp16_row(f32.data(), static_cast<ggml_fp16_t*>(dst) + r * n_per_row, n_per_row);
            } else {
                ggml_fp32_to_bf16_row(f32.data(), static_cast<ggml_bf16_t*>(dst) + r * n_per_row, n_per_row);
            }
        }
    };
    const int64_t per = (n_rows + std::max(threads, 1) - 1) / std::max(threads, 1);
    std::vector<std::thread> pool;
    for (int64_t first = per; first < n_rows; first += per) pool.emplace_back(decode, first, std::min(n_rows, first + per));
    decode(0, std::min(n_rows, per));
    for (std::thread& th : pool) th.join();
}

}  // namespace vla_edge
