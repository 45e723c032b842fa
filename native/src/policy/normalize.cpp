#include "normalize.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace vla_edge::policy {
namespace {
constexpr double kEps = 1e-6;

void check_width(const QuantileStats& s, size_t dim) {
    if (dim > s.q01.size() || s.q99.size() != s.q01.size()) {
        throw std::invalid_argument("norm stats have " + std::to_string(s.q01.size()) + " dims, values have " +
                                    std::to_string(dim));
    }
}
}  // namespace

void QuantileStats::normalize(const double* x, size_t rows, size_t dim, float* out) const {
    check_width(*this, dim);
    for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < dim; ++i) {
            const double v = (x[r * dim + i] - q01[i]) / (q99[i] - q01[i] + kEps) * 2.0 - 1.0;
            out[r * dim + i] = static_cast<float>(v);
        }
    }
}

void QuantileStats::unnormalize(const double* y, size_t rows, size_t dim, float* out) const {
    check_width(*this, dim);
    for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < dim; ++i) {
            const double v = (y[r * dim + i] + 1.0) / 2.0 * (q99[i] - q01[i] + kEps) + q01[i];
            out[r * dim + i] = static_cast<float>(v);
        }
    }
}

std::vector<int> discretize_state(const double* normalized, size_t n) {
    // Bin edges are -1 + i / 128 (exact in binary): the bin is how many edges lie at or below x, minus 1.
    std::vector<int> bins(n);
    for (size_t i = 0; i < n; ++i) {
        const double x = std::clamp(normalized[i], -1.0, 1.0);
        int count = 0;
        for (int b = 0; b < kStateBins; ++b) count += (-1.0 + b * (2.0 / kStateBins)) <= x;
        bins[i] = count - 1;
    }
    return bins;
}

}  // namespace vla_edge::policy
