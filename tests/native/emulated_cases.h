// What the emulated kernel tests (tests/native/*_emulated.cpp) share: rel-L2, and for the attention
// kernels random F16 queries with a K/V cache laid out as the runtime lays it out (each observation's
// key range padded to 16 rows, the padding zero-filled) and float64 attention over it. Include after
// cuda_emulation.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace vla_edge_emulation {

struct AttentionCase {
    int D = 0, rows_total = 0;  // query rows per observation
    std::vector<int> base, keys;  // per observation: its first cache row, its keys
    std::vector<__half> q, k, v;  // q [observation][row][D]; k, v [cache row][D]

    AttentionCase(std::mt19937& rng, int head_dim, int rows, const std::vector<int>& keys_per_observation)
        : D(head_dim), rows_total(rows), base(keys_per_observation.size()), keys(keys_per_observation) {
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        auto random_half = [&](size_t n) {
            std::vector<__half> x(n);
            for (__half& e : x) e = __float2half(u(rng));
            return x;
        };
        int cache = 0;
        for (size_t s = 0; s < keys.size(); ++s) base[s] = cache, cache += (keys[s] + 15) / 16 * 16 + 16;
        q = random_half(keys.size() * rows_total * D), k = random_half(size_t(cache) * D), v = random_half(size_t(cache) * D);
        for (size_t s = 0; s < keys.size(); ++s)  // the runtime zero-fills a range's padding rows
            for (int r = keys[s]; r < (keys[s] + 15) / 16 * 16; ++r)
                for (int j = 0; j < D; ++j) k[size_t(base[s] + r) * D + j] = v[size_t(base[s] + r) * D + j] = __float2half(0.0f);
    }
    int observations() const { return static_cast<int>(keys.size()); }
    int max_keys() const { return *std::max_element(keys.begin(), keys.end()); }

    // softmax(q k^T scale) v in float64 for query row `row` of observation s: D values
    std::vector<double> reference(int s, int row, double scale) const {
        std::vector<double> w(keys[s]), o(D, 0.0);
        double mx = -INFINITY, sum = 0;
        for (int key = 0; key < keys[s]; ++key) {
            double dot = 0;
            for (int j = 0; j < D; ++j)
                dot += double(__half2float(q[(size_t(s) * rows_total + row) * D + j])) * __half2float(k[size_t(base[s] + key) * D + j]);
            w[key] = dot * scale, mx = std::max(mx, w[key]);
        }
        for (double& x : w) sum += (x = std::exp(x - mx));
        for (int key = 0; key < keys[s]; ++key)
            for (int j = 0; j < D; ++j) o[j] += w[key] / sum * __half2float(v[size_t(base[s] + key) * D + j]);
        return o;
    }
};

inline double rel_l2(const std::vector<double>& got, const std::vector<double>& want) {
    double d = 0, n = 0;
    for (size_t i = 0; i < got.size(); ++i) d += (got[i] - want[i]) * (got[i] - want[i]), n += want[i] * want[i];
    return std::sqrt(d / n);
}

}  // namespace vla_edge_emulation
