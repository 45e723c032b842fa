// The vision tower in our own CUDA code (native/src/cuda_vision_loop.h says why). Same arithmetic as
// the ggml vision graph of pi05_graph.cpp (build_vision): the patch embedding in float32, layer
// products on BF16 inputs with float32 accumulation and outputs, float32 layer norms and GELU (tanh
// form, as ggml-CUDA computes it), attention on F16 q/k/v with float32 scores and softmax and F16
// probabilities (what ggml's flash kernel rounds to as well).
#include "cuda_vision_loop.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "loop_common.cuh"
#include "vision_kernels.cuh"

namespace vla_edge {

namespace {

using namespace vision_kernels;

constexpr const char* kWho = "CUDA vision loop";
void check(cudaError_t e, const char* what) { loop_check(e, kWho, what); }
void check(cublasStatus_t s, const char* what) { loop_check(s, kWho, what); }

}  // namespace

struct CudaVisionLoop::Impl {
    CudaVisionSpec spec;
    std::unique_ptr<LoopStream> io;  // made once the device is selected
    bool vector_norms = true;        // vector_norms_wanted()
    // attention as one kernel (flash_attention.cuh: scores, softmax and values per 64 query rows, BF16
    // out in the output product's rows) where the head_dim is one it is built for, unless
    // VLA_EDGE_CUDA_VISION_ATTENTION=batched; else two batched cuBLAS products around a softmax kernel.
    // 9.0 against ~19 us per layer alone (kernel bench, H100, 2026-12-07); the default since that day's
    // seventh session
    bool flash = false;
    LoopBuffers fixed{kWho};         // for the loop's lifetime: float32 copies of the patch kernel and positions
    float *patch_w = nullptr, *position = nullptr;
    // stored input widths of the layers' width-input products (q/k/v, up), the output, down products
    // and the projection (packs pad the layers' and not the projection's, so they may differ)
    int64_t ld_h = 0, ld_o = 0, ld_f = 0, ld_p = 0;
    // Activations for up to `images` images, made again (zero-filled) when more come.
    LoopBuffers act{kWho};
    int images = 0;
    float *patches = nullptr, *x = nullptr, *qkv = nullptr, *scores = nullptr, *o = nullptr, *u = nullptr, *y = nullptr;
    bf16 *hn = nullptr, *attn = nullptr, *g = nullptr, *hp = nullptr;  // hp: the projection's input
    __half *q16 = nullptr, *k16 = nullptr, *v16 = nullptr, *p16 = nullptr;
    CapturedShapes shapes{kWho};  // declared last, destroyed first: before the buffers its graphs use

    void reserve(int n_images) {
        if (n_images <= images) return;
        const CudaVisionSpec& s = spec;
        shapes.clear();
        act.release();
        images = 0;
        const int64_t T = int64_t{n_images} * s.tokens_per_image, W = s.width;
        const int64_t score_values = int64_t{n_images} * s.heads * s.tokens_per_image * s.tokens_per_image;
        act.alloc(patches, T * s.patch_values);
        act.alloc(x, T * W);
        act.alloc(qkv, T * 3 * W);
        act.alloc(scores, score_values);
        act.alloc(p16, score_values);
        act.alloc(q16, T * W);
        // 16 more rows: the flash form reads an image's keys up to a multiple of 16 (weighing the extra zero)
        act.alloc(k16, T * W + 16 * int64_t{s.head_dim});
        act.alloc(v16, T * W + 16 * int64_t{s.head_dim});
        act.alloc(o, T * W);
        act.alloc(u, T * s.ffn);
        act.alloc(y, T * s.out_width);
        act.alloc(hn, T * ld_h);
        act.alloc(attn, T * ld_o);
        act.alloc(g, T * ld_f);
        act.alloc(hp, T * ld_p);
        images = n_images;
    }

    // Attention of every head of every image over that image's tokens: scores = q k^T / sqrt(d)
    // (F16 in, float32 out), softmax, o = p v (F16 in, float32 out), each one batched launch.
    void attention(int n_images) const {
        const CudaVisionSpec& s = spec;
        const int n = s.tokens_per_image, d = s.head_dim, batch = n_images * s.heads;
        const float scale = 1.0f / std::sqrt(static_cast<float>(d)), one = 1.0f, zero = 0.0f;
        const long long qkv_stride = int64_t{n} * d, score_stride = int64_t{n} * n;
        check(cublasGemmStridedBatchedEx(io->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, d, &scale, k16, CUDA_R_16F, d, qkv_stride,
                                         q16, CUDA_R_16F, d, qkv_stride, &zero, scores, CUDA_R_32F, n, score_stride, batch,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "attention scores");
        const int64_t rows = int64_t{batch} * n;
        softmax_rows_kernel<<<blocks(rows, kThreads / 32), kThreads, 0, io->stream>>>(scores, rows, n, p16);
        check(cublasGemmStridedBatchedEx(io->blas, CUBLAS_OP_N, CUBLAS_OP_N, d, n, n, &one, v16, CUDA_R_16F, d, qkv_stride,
                                         p16, CUDA_R_16F, n, score_stride, &zero, o, CUDA_R_32F, d, qkv_stride, batch,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "attention values");
    }

    // The flash form: every (image, head) an observation of its own with its own K/V (ints: bases, keys),
    // one split over all of an image's tokens, the heads' outputs written into attn's rows.
    void flash_attention(int n_images, const int* ints) const {
        const CudaVisionSpec& s = spec;
        const int n = s.tokens_per_image, obs = n_images * s.heads;
        const expert_kernels::SplitPlan one{1, (n + expert_kernels::kFlashKeys - 1) / expert_kernels::kFlashKeys *
                                                   expert_kernels::kFlashKeys};
        expert_kernels::launch_flash_attention(s.head_dim, one, 1, obs, n, n, io->stream, q16, k16, v16, ints, ints + obs, n, 1,
                                               1.0f / std::sqrt(static_cast<float>(s.head_dim)), nullptr, nullptr, attn,
                                               ld_o, s.heads);
    }

    // Every launch of the tower, in stream order (captured once per image count).
    void enqueue(int n_images, const int* ints) const {
        const CudaVisionSpec& s = spec;
        const cudaStream_t st = io->stream;
        const int T = n_images * s.tokens_per_image, W = s.width;
        const float one = 1.0f, zero = 0.0f;
        // x = patches K^T in float32, as ggml's graph (it casts the kernel to float32)
        check(cublasSgemm(io->blas, CUBLAS_OP_T, CUBLAS_OP_N, W, T, s.patch_values, &one, patch_w, s.patch_values, patches,
                          s.patch_values, &zero, x, W),
              "patch embedding");
        embed_add_kernel<<<T, kThreads, 0, st>>>(x, W, s.patch_b, position, s.tokens_per_image);
        const float* pending = nullptr;  // the bias of the product that last wrote x
        for (const CudaVisionLayer& L : s.layers) {
            layer_norm_kernel<<<T, kThreads, 0, st>>>(x, W, pending, L.ln1_w, L.ln1_b, s.eps, hn, ld_h, vector_norms);
            if (L.qkv.data) {
                io->product(L.qkv, hn, T, qkv, 0.0f);
            } else {
                io->product(L.q, hn, T, qkv, 0.0f, 3 * int64_t{W});
                io->product(L.k, hn, T, qkv + W, 0.0f, 3 * int64_t{W});
                io->product(L.v, hn, T, qkv + 2 * W, 0.0f, 3 * int64_t{W});
            }
            vision_qkv_kernel<<<T, kThreads, 0, st>>>(qkv, W, s.heads, s.head_dim, s.tokens_per_image, L.q_b, L.k_b,
                                                     L.v_b, q16, k16, v16);
            if (flash) {
                flash_attention(n_images, ints);
            } else {
                attention(n_images);
                vision_heads_kernel<<<T, kThreads, 0, st>>>(o, s.heads, s.head_dim, s.tokens_per_image, attn, ld_o);
            }
            io->product(L.out, attn, T, x, 1.0f);  // the residual rides in the product, its bias in the next norm
            layer_norm_kernel<<<T, kThreads, 0, st>>>(x, W, L.out_b, L.ln2_w, L.ln2_b, s.eps, hn, ld_h, vector_norms);
            io->product(L.up, hn, T, u, 0.0f);
            launch_bias_gelu(st, u, L.up_b, s.ffn, T, g, ld_f);
            io->product(L.down, g, T, x, 1.0f);
            pending = L.down_b;
        }
        layer_norm_kernel<<<T, kThreads, 0, st>>>(x, W, pending, s.post_w, s.post_b, s.eps, hp, ld_p, vector_norms);
        io->product(s.proj, hp, T, y, 0.0f);
        const int64_t n_out = int64_t{T} * s.out_width;
        bias_add_kernel<<<blocks(n_out, kThreads), kThreads, 0, st>>>(y, s.proj_b, s.out_width, n_out);
        check(cudaGetLastError(), "launching the vision kernels");
    }
};

CudaVisionLoop::CudaVisionLoop(CudaVisionSpec spec) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    const CudaVisionSpec& s = spec;
    auto fail = [](const std::string& why) { throw std::runtime_error(std::string(kWho) + ": " + why); };
    loop_require_bf16_device(kWho, s.device);
    if (s.layers.empty()) fail("no layers");
    if (s.width < 1 || s.heads < 1 || s.head_dim * s.heads != s.width || s.head_dim % 8) {
        fail("width " + std::to_string(s.width) + " is not heads x head_dim with head_dim a multiple of 8");
    }
    if (s.tokens_per_image < 1 || s.patch_values < 1 || s.ffn < 1 || s.out_width < 1) fail("empty geometry");
    const CudaVisionLayer& first = s.layers.front();
    m.ld_h = (first.qkv.data ? first.qkv : first.q).stride;
    m.ld_o = first.out.stride;
    m.ld_f = first.down.stride;
    m.ld_p = s.proj.stride;
    if (m.ld_h < s.width || m.ld_o < s.width || m.ld_f < s.ffn || m.ld_p < s.width) {
        fail("layer 0's matrices or the projection are narrower than their inputs");
    }
    auto vectors = [&](const std::string& at, std::initializer_list<const float*> v) {
        for (const float* p : v)
            if (!p) fail(at + "a norm's weight or bias, or a product's bias, is missing");
    };
    for (size_t i = 0; i < s.layers.size(); ++i) {
        const CudaVisionLayer& L = s.layers[i];
        const std::string at = "layer " + std::to_string(i) + ": ";
        auto bf16_matrix = [&](const CudaMatrix& w, int64_t rows, int64_t cols, int64_t stride, const char* what) {
            loop_require_bf16(kWho, at + what, w, rows, cols, stride);
        };
        if (L.qkv.data) {
            bf16_matrix(L.qkv, 3 * int64_t{s.width}, s.width, m.ld_h, "fused q/k/v");
        } else {
            bf16_matrix(L.q, s.width, s.width, m.ld_h, "q projection");
            bf16_matrix(L.k, s.width, s.width, m.ld_h, "k projection");
            bf16_matrix(L.v, s.width, s.width, m.ld_h, "v projection");
        }
        bf16_matrix(L.out, s.width, s.width, m.ld_o, "output projection");
        bf16_matrix(L.up, s.ffn, s.width, m.ld_h, "feed-forward up");
        bf16_matrix(L.down, s.width, s.ffn, m.ld_f, "feed-forward down");
        vectors(at, {L.ln1_w, L.ln1_b, L.ln2_w, L.ln2_b, L.q_b, L.k_b, L.v_b, L.out_b, L.up_b, L.down_b});
    }
    loop_require_bf16(kWho, "the projection", s.proj, s.out_width, s.width, m.ld_p);
    vectors("", {s.patch_b, s.post_w, s.post_b, s.proj_b});
    auto plain = [&](const CudaMatrix& w, int64_t rows, int64_t cols, const char* what) {
        if (!w.data || w.rows != rows || w.cols != cols || w.stride < cols) {
            fail(std::string(what) + " is " + std::to_string(w.rows) + " x " + std::to_string(w.cols) + ", expected " +
                 std::to_string(rows) + " x " + std::to_string(cols));
        }
    };
    plain(s.patch_w, s.width, s.patch_values, "the patch embedding's kernel");
    plain(s.position, s.tokens_per_image, s.width, "the position table");
    m.spec = std::move(spec);
    check(cudaSetDevice(m.spec.device), "selecting the device");
    m.vector_norms = vector_norms_wanted();
    // the flash form by default since the seventh session of 2026-12-07 (H100, beside realtime-vla: the tower
    // 2.8 -> 2.6 ms at 2 views, 4.0 -> 3.5 at 3; docs/gpu.md); VLA_EDGE_CUDA_VISION_ATTENTION=batched: the two
    // batched cuBLAS products around the softmax kernel, as before (and where flash is not built for the head_dim)
    if (const char* v = std::getenv("VLA_EDGE_CUDA_VISION_ATTENTION"); !(v && !std::strcmp(v, "batched")) &&
                                                                       expert_kernels::flash_head_dim(m.spec.head_dim)) {
        allow_shared_memory(kWho, expert_kernels::flash_kernel_for(m.spec.head_dim));
        m.flash = true;
    }
    m.io = std::make_unique<LoopStream>(kWho);
    for (auto [from, to] : {std::pair{&m.spec.patch_w, &m.patch_w}, std::pair{&m.spec.position, &m.position}}) {
        const int64_t n = from->rows * from->cols;
        m.fixed.alloc(*to, n);
        to_f32_kernel<<<blocks(n, kThreads), kThreads, 0, m.io->stream>>>(*from, *to);
    }
    check(cudaGetLastError(), "converting the patch kernel and positions");
    check(cudaStreamSynchronize(m.io->stream), "converting the patch kernel and positions");
}

CudaVisionLoop::~CudaVisionLoop() = default;

size_t CudaVisionLoop::captured_graphs() const { return impl_->shapes.size(); }

std::string CudaVisionLoop::describe() const {
    return std::string(impl_->spec.layers.front().qkv.data ? "q/k/v fused" : "q/k/v separate") +
           (impl_->flash ? "; attention flash" : "") + (impl_->vector_norms ? "; vector norms" : "");
}

void CudaVisionLoop::run(const float* patches, int n_images, const std::vector<float*>& out) {
    Impl& m = *impl_;
    const CudaVisionSpec& s = m.spec;
    if (n_images < 1 || out.size() != static_cast<size_t>(n_images)) {
        throw std::invalid_argument("CUDA vision loop: " + std::to_string(n_images) + " images with " +
                                    std::to_string(out.size()) + " output blocks");
    }
    check(cudaSetDevice(s.device), "selecting the device");
    m.reserve(n_images);
    std::vector<int> ints;  // the flash form's (image, head) K/V bases and key counts
    if (m.flash) {
        const int obs = n_images * s.heads;
        for (int i = 0; i < obs; ++i) ints.push_back(i * s.tokens_per_image);
        ints.insert(ints.end(), obs, s.tokens_per_image);
    }
    const cudaGraphExec_t exec = m.shapes.get({n_images}, ints, *m.io, [&](const int* p) { m.enqueue(n_images, p); });
    const cudaStream_t st = m.io->stream;
    const int64_t T = int64_t{n_images} * s.tokens_per_image;
    const size_t patch_bytes = static_cast<size_t>(T) * s.patch_values * sizeof(float);
    check(cudaMemcpyAsync(m.patches, patches, patch_bytes, cudaMemcpyHostToDevice, st), "uploading the patches");
    check(cudaGraphLaunch(exec, st), "launching the vision graph");
    const size_t image_floats = static_cast<size_t>(s.tokens_per_image) * s.out_width;
    for (int i = 0; i < n_images; ++i) {
        check(cudaMemcpyAsync(out[i], m.y + i * image_floats, image_floats * sizeof(float), cudaMemcpyDefault, st),
              "copying out the image tokens");
    }
    check(cudaStreamSynchronize(st), "running the vision loop");
}

}  // namespace vla_edge
