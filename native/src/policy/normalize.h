// pi0.5's quantile normalisation (openpi): x -> (x - q01) / (q99 - q01 + 1e-6) * 2 - 1, so the
// 1st..99th percentile of the training data maps onto [-1, 1]; and its inverse for actions.
// Computed in float64 and rounded to float32 once, as the NumPy code it replaces did.
#pragma once

#include <cstddef>
#include <vector>

namespace vla_edge::policy {

struct QuantileStats {
    std::vector<double> q01, q99;  // may be wider than the robot (padded model dims): a prefix is used

    // rows x dim values (dim <= q01.size()) -> normalised float32.
    void normalize(const double* x, size_t rows, size_t dim, float* out) const;
    // rows x dim normalised values -> robot units (float32).
    void unnormalize(const double* y, size_t rows, size_t dim, float* out) const;
};

constexpr int kStateBins = 256;

// Normalised state in [-1, 1] -> bins 0..255 (values outside are clipped first, so an
// out-of-distribution state gives an edge bin rather than openpi's unseen '-1'/'256' tokens).
std::vector<int> discretize_state(const double* normalized, size_t n);

}  // namespace vla_edge::policy
