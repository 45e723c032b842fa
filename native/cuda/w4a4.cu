// W4A4 linear layers on NVIDIA GPUs, exactly as a vla-edge pack defines them
// (sdk/packs/w4a4.py; oracle: targets/reference/w4a4.py). The rotations are plain dense products
// and stay with cuBLAS / TensorRT; these kernels do the part with W4A4 semantics:
//
//   quantise   q = clamp(rint(x / s), -8, 7), float32 division, round half to even; s from the
//              layer's per-step table row (static) or max|x| / 7 per token and group (dynamic)
//   product    y[t, o] = sum over segments of S = gcd(G, A) channels of
//              (exact int32 sum of code products) * s_act * s_weight, accumulated in float64
//              like the oracle; with per-channel activation scales (A = 1) the segment is one
//              channel and the sum runs over activation-scaled codes.
//
// Accumulating in float64 makes the float32 result agree with the oracle to the last bit except
// where two summation orders round differently (tests allow 2 ulp). This first version favours
// being checkable over speed: one thread per output, no tensor cores. Built and run only on the
// GPU machine (tests/native/test_w4a4_cuda.py); no vla-edge target calls it yet.
#include <cstdint>

#include <cuda_runtime.h>

namespace {

__device__ inline int code_at(const uint8_t* packed_row, int k) {
    const int nibble = (packed_row[k >> 1] >> ((k & 1) * 4)) & 0xF;  // column 2k low, 2k+1 high
    return nibble >= 8 ? nibble - 16 : nibble;
}

__device__ inline int8_t quantise_one(float x, float s) {
    if (!(s > 0.0f)) return 0;  // the oracle's rule for an all-zero group
    float q = rintf(__fdiv_rn(x, s));
    q = fminf(fmaxf(q, -8.0f), 7.0f);
    return static_cast<int8_t>(q);
}

__global__ void quantise_static(const float* x, const float* scale_row, int T, int K, int A, int8_t* q) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<int64_t>(T) * K) return;
    const int k = static_cast<int>(i % K);
    q[i] = quantise_one(x[i], scale_row[k / A]);
}

// One thread per (token, group): the group's max|x| / 7, then its codes.
__global__ void quantise_dynamic(const float* x, int T, int K, int A, float* scales, int8_t* q) {
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int groups = K / A;
    if (i >= static_cast<int64_t>(T) * groups) return;
    const int64_t t = i / groups, g = i % groups;
    const float* xs = x + t * K + g * A;
    float m = 0.0f;
    for (int j = 0; j < A; ++j) m = fmaxf(m, fabsf(xs[j]));
    const float s = __fdiv_rn(m, 7.0f);
    scales[i] = s;
    for (int j = 0; j < A; ++j) q[t * K + g * A + j] = quantise_one(xs[j], s);
}

__global__ void w4a4_product(const int8_t* q, const float* act_scales, int act_rows, const uint8_t* packed,
                             const float* wscale, int T, int K, int N, int G, int A, int S, float* y,
                             int32_t* acc_out) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    const int t = blockIdx.y;
    if (o >= N || t >= T) return;
    const int8_t* qt = q + static_cast<int64_t>(t) * K;
    const float* sa = act_scales + static_cast<int64_t>(act_rows == 1 ? 0 : t) * (K / A);
    const uint8_t* wrow = packed + static_cast<int64_t>(o) * (K / 2);
    const float* sw = wscale + static_cast<int64_t>(o) * (K / G);
    double sum = 0.0;
    for (int seg = 0; seg < K / S; ++seg) {
        int32_t acc = 0;
        for (int k = seg * S; k < (seg + 1) * S; ++k) acc += static_cast<int32_t>(qt[k]) * code_at(wrow, k);
        if (acc_out) acc_out[(static_cast<int64_t>(t) * N + o) * (K / S) + seg] = acc;
        sum += static_cast<double>(acc) * static_cast<double>(sa[seg * S / A]) * static_cast<double>(sw[seg * S / G]);
    }
    y[static_cast<int64_t>(t) * N + o] = static_cast<float>(sum);
}

int gcd(int a, int b) { return b == 0 ? a : gcd(b, a % b); }

int status(cudaError_t e) { return e == cudaSuccess ? 0 : -static_cast<int>(e); }

}  // namespace

// All pointers are device pointers; functions return 0 or a negative CUDA error code, and
// synchronise before returning (simple to check, not tuned for streams).
extern "C" {

int vla_w4a4_quantise_static(const float* x, const float* scale_row, int T, int K, int A, int8_t* q) {
    if (T <= 0 || K <= 0 || A <= 0 || K % A) return -1000;
    const int64_t n = static_cast<int64_t>(T) * K;
    quantise_static<<<static_cast<unsigned>((n + 255) / 256), 256>>>(x, scale_row, T, K, A, q);
    return status(cudaDeviceSynchronize());
}

int vla_w4a4_quantise_dynamic(const float* x, int T, int K, int A, float* scales, int8_t* q) {
    if (T <= 0 || K <= 0 || A <= 0 || K % A) return -1000;
    const int64_t n = static_cast<int64_t>(T) * (K / A);
    quantise_dynamic<<<static_cast<unsigned>((n + 255) / 256), 256>>>(x, T, K, A, scales, q);
    return status(cudaDeviceSynchronize());
}

int vla_w4a4_product(const int8_t* q, const float* act_scales, int act_rows, const uint8_t* packed,
                     const float* wscale, int T, int K, int N, int G, int A, float* y, int32_t* acc_out) {
    if (T <= 0 || K <= 0 || N <= 0 || G <= 0 || A <= 0 || K % G || K % A || K % 2) return -1000;
    if (act_rows != 1 && act_rows != T) return -1001;
    const dim3 grid(static_cast<unsigned>((N + 127) / 128), static_cast<unsigned>(T));
    w4a4_product<<<grid, 128>>>(q, act_scales, act_rows, packed, wscale, T, K, N, G, A, gcd(G, A), y, acc_out);
    return status(cudaDeviceSynchronize());
}

}  // extern "C"
