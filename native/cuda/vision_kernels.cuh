// The vision loop's kernels (native/cuda/vision_loop.cu), in a header of their own so that
// benchmarks/cuda_expert_kernels.cu can time and check them alone on the GPU machine without the
// native core, as it does the expert's (expert_kernels.cuh says why the non-template kernels are
// `static` and the namespace is a named one).
#pragma once

#include "expert_kernels.cuh"

namespace vla_edge {
namespace vision_kernels {

using namespace expert_kernels;

// A rows x cols matrix of any element type as packed float32 (the patch kernel, the positions).
static __global__ void to_f32_kernel(CudaMatrix m, float* out) {
    const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
    if (i >= m.rows * m.cols) return;
    out[i] = load(m.data, m.type, i / m.cols * m.stride + i % m.cols);
}

// x[t] = (x[t] + patch bias) + position[t mod tokens per image], one block per token.
static __global__ void embed_add_kernel(float* x, int W, const float* bias, const float* position, int per_image) {
    float* xr = x + static_cast<int64_t>(blockIdx.x) * W;
    const float* pr = position + static_cast<int64_t>(blockIdx.x % per_image) * W;
    for (int i = threadIdx.x; i < W; i += blockDim.x) xr[i] = (xr[i] + bias[i]) + pr[i];
}

// Layer norm, one block per token: first x += pending (the bias of the product that last wrote x,
// written back; null: none), then y = (x - mean) / sqrt(var + eps) * w + b in the type the next
// product reads. With `vec` (the default since the H100 run of 2026-12-07; VLA_EDGE_CUDA_VECTOR_NORMS=0
// turns it off) and where the width and addresses allow (SigLIP's 1152: 288 float4), each thread
// holds up to kNormVec float4 of x (with the bias added), w and b in registers, all loaded before the
// first sum, so the block waits on one round of loads instead of the row read three times (the first form:
// 5.8 us per norm at 2 images in the chunk's profile, 4.0 in the kernel bench against 2.8 with `vec`;
// H100, 2026-12-07). Same arithmetic per element; the two sums
// add in another order.
template <typename Out>
__global__ void layer_norm_kernel(float* x, int W, const float* pending, const float* w, const float* b, float eps, Out* y,
                                  int64_t ld, bool vec) {
    __shared__ float partial[32];
    float* xr = x + static_cast<int64_t>(blockIdx.x) * W;
    Out* yr = y + blockIdx.x * ld;
    if (vec && norm_slots_fit(W, xr, w, b, pending) && aligned_to(yr, 4 * sizeof(Out))) {
        float4 xv[kNormVec], pv[kNormVec], wv[kNormVec], bv[kNormVec];
        load_slots(xr, W, xv);
        if (pending) load_slots(pending, W, pv);
        load_slots(w, W, wv);
        load_slots(b, W, bv);
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < kNormVec; ++j) {
            if (norm_slot(j) < W) {
                if (pending) {
                    xv[j] = {xv[j].x + pv[j].x, xv[j].y + pv[j].y, xv[j].z + pv[j].z, xv[j].w + pv[j].w};
                    *reinterpret_cast<float4*>(xr + norm_slot(j)) = xv[j];
                }
                sum += xv[j].x + xv[j].y + xv[j].z + xv[j].w;
            }
        }
        const float mean = block_sum(sum, partial) / W;
        float sq = 0.0f;
#pragma unroll
        for (int j = 0; j < kNormVec; ++j) {
            if (norm_slot(j) < W) {
                const float a = xv[j].x - mean, c = xv[j].y - mean, e = xv[j].z - mean, f = xv[j].w - mean;
                sq += a * a + c * c + e * e + f * f;
            }
        }
        const float r = rsqrtf(block_sum(sq, partial) / W + eps);
#pragma unroll
        for (int j = 0; j < kNormVec; ++j) {
            const int i = norm_slot(j);
            if (i < W) {
                store4(yr + i, (xv[j].x - mean) * r * wv[j].x + bv[j].x, (xv[j].y - mean) * r * wv[j].y + bv[j].y,
                       (xv[j].z - mean) * r * wv[j].z + bv[j].z, (xv[j].w - mean) * r * wv[j].w + bv[j].w);
            }
        }
        return;
    }
    float sum = 0.0f;
    for (int i = threadIdx.x; i < W; i += blockDim.x) {
        float v = xr[i];
        if (pending) xr[i] = v = v + pending[i];
        sum += v;
    }
    const float mean = block_sum(sum, partial) / W;
    float sq = 0.0f;
    for (int i = threadIdx.x; i < W; i += blockDim.x) sq += (xr[i] - mean) * (xr[i] - mean);  // this thread's own writes
    const float r = rsqrtf(block_sum(sq, partial) / W + eps);
    for (int i = threadIdx.x; i < W; i += blockDim.x) store(yr + i, (xr[i] - mean) * r * w[i] + b[i]);
}

// q, k, v (+ their biases) from the fused product's float32 rows [q | k | v] to F16, each laid out
// [image][head][token][head_dim] for the batched attention products. One block per token, four
// consecutive columns per thread (16-byte loads, 8-byte stores: head_dim is a multiple of 8, so four
// columns never straddle a head); one column per thread took ~10 us per layer at 2 images (H100
// profile, 2026-12-07). Same arithmetic per element.
static __global__ void vision_qkv_kernel(const float* qkv, int W, int heads, int d, int per_image, const float* qb,
                                         const float* kb, const float* vb, __half* q16, __half* k16, __half* v16) {
    const int t = blockIdx.x, image = t / per_image, n = t % per_image;
    const float4* src = reinterpret_cast<const float4*>(qkv + static_cast<int64_t>(t) * 3 * W);
    for (int i4 = threadIdx.x; i4 < 3 * W / 4; i4 += blockDim.x) {
        const int i = 4 * i4, part = i / W, c = i % W, h = c / d, j = c % d;
        const float* bias = (part == 0 ? qb : part == 1 ? kb : vb) + c;
        __half* dst = (part == 0 ? q16 : part == 1 ? k16 : v16) +
                      ((static_cast<int64_t>(image) * heads + h) * per_image + n) * d + j;
        const float4 v = src[i4];
        __half2* out = reinterpret_cast<__half2*>(dst);
        out[0] = __halves2half2(__float2half(v.x + bias[0]), __float2half(v.y + bias[1]));
        out[1] = __halves2half2(__float2half(v.z + bias[2]), __float2half(v.w + bias[3]));
    }
}

// Softmax of each row of n float32 scores (already scaled) into F16 probabilities, one warp per row.
static __global__ void softmax_rows_kernel(const float* scores, int64_t rows, int n, __half* p) {
    const int64_t row = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float* s = scores + row * n;
    float m = -INFINITY;
    for (int j = lane; j < n; j += 32) m = fmaxf(m, s[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < n; j += 32) sum += expf(s[j] - m);
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < n; j += 32) p[row * n + j] = __float2half(expf(s[j] - m) * inv);
}

// The heads' outputs [image][head][token][head_dim] (float32) back to token rows [head | ...] in
// BF16, the output product's input. One block per token.
static __global__ void vision_heads_kernel(const float* o, int heads, int d, int per_image, bf16* attn, int64_t ld) {
    const int t = blockIdx.x, image = t / per_image, n = t % per_image;
    for (int c = threadIdx.x; c < heads * d; c += blockDim.x) {
        const int h = c / d, j = c % d;
        const float v = o[((static_cast<int64_t>(image) * heads + h) * per_image + n) * d + j];
        attn[static_cast<int64_t>(t) * ld + c] = __float2bfloat16(v);
    }
}

// g = GELU(u + b) (gelu_tanh) in BF16 rows `ld` wide; u rows F wide. Four consecutive columns per
// thread (F and ld multiples of 4, as launch_bias_gelu checks; else bias_gelu_kernel's one): 2.2M
// values at 2 images took ~9 us per layer one per thread (H100 profile, 2026-12-07). Same arithmetic
// per element.
static __global__ void bias_gelu4_kernel(const float* u, const float* b, int F, int64_t n4, bf16* g, int64_t ld) {
    const int64_t i4 = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
    if (i4 >= n4) return;
    const int64_t i = 4 * i4, t = i / F;
    const int c = static_cast<int>(i % F);
    const float4 v = reinterpret_cast<const float4*>(u)[i4];
    __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(g + t * ld + c);
    out[0] = __floats2bfloat162_rn(gelu_tanh(v.x + b[c]), gelu_tanh(v.y + b[c + 1]));
    out[1] = __floats2bfloat162_rn(gelu_tanh(v.z + b[c + 2]), gelu_tanh(v.w + b[c + 3]));
}

static __global__ void bias_gelu_kernel(const float* u, const float* b, int F, int64_t n, bf16* g, int64_t ld) {
    const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
    if (i >= n) return;
    const int64_t t = i / F;
    const int c = static_cast<int>(i % F);
    g[t * ld + c] = __float2bfloat16(gelu_tanh(u[i] + b[c]));
}

// y[t] += b, rows F wide.
static __global__ void bias_add_kernel(float* y, const float* b, int F, int64_t n) {
    const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
    if (i < n) y[i] += b[i % F];
}

// g = GELU(u + b) for T tokens of F values: four columns per thread where F and ld allow, else one.
static inline void launch_bias_gelu(cudaStream_t st, const float* u, const float* b, int F, int T, bf16* g, int64_t ld) {
    const int64_t n = int64_t{T} * F;
    if (F % 4 == 0 && ld % 4 == 0) {
        bias_gelu4_kernel<<<blocks(n / 4, kThreads), kThreads, 0, st>>>(u, b, F, n / 4, g, ld);
    } else {
        bias_gelu_kernel<<<blocks(n, kThreads), kThreads, 0, st>>>(u, b, F, n, g, ld);
    }
}

}  // namespace vision_kernels
}  // namespace vla_edge
