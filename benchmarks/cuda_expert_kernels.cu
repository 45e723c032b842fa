// The expert loop's kernels and products one at a time, at pi0.5's full expert shapes (or, with
// --tokens, as many query tokens as a prefix has), on random data: each attention form checked
// against a float64 reference, then every kernel timed as a
// CUDA graph of repeated launches (how the loop replays them), and each layer product timed with
// cuBLAS's default algorithm beside every algorithm cuBLASLt's heuristic offers, raced as TunedProducts does; then the
// vision loop's small kernels at 2 images (bench_vision_kernels). `--products vision|prefix` races
// that loop's layer products instead, at 2 views, and nothing else. Builds in seconds
// on the GPU machine, where the whole native core takes minutes (docs/gpu.md, "Kernel bench"):
//   nvcc -O3 -std=c++17 -arch=sm_90 -Inative/src -Inative/cuda benchmarks/cuda_expert_kernels.cu native/cuda/tuned_products.cu \
//        -lcublasLt -lcublas -o /tmp/kb && /tmp/kb --keys 632 --out $OUT/cuda_expert_kernels.json
#include "expert_kernels.cuh"
#include "flash_attention.cuh"
#include "graph_timer.cuh"
#include "vision_kernels.cuh"
#include "tuned_products.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

using namespace vla_edge;
using namespace vla_edge::expert_kernels;

namespace {

void ok(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        std::exit(1);
    }
}

__device__ inline float hash_uniform(uint64_t i, uint32_t seed) {  // splitmix64 -> [-1, 1)
    uint64_t z = i + 0x9e3779b97f4a7c15ull * (seed + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) / static_cast<float>(1ull << 23) - 1.0f;
}
// N grid barriers in a row (grid_barrier.cuh), to time one: what the merge in the attention's launch
// pays for it, and what the persistent expert kernel of docs/gpu.md would pay eight times per layer and step.
template <int N>
__global__ void barrier_probe_kernel(GridBarrier g) {
#pragma unroll 1
    for (int i = 0; i < N; ++i) grid_barrier(g);
}

template <typename T>
__global__ void fill_kernel(T* p, int64_t n, uint32_t seed, float amp) {
    const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
    if (i < n) p[i] = static_cast<T>(amp * hash_uniform(static_cast<uint64_t>(i), seed));
}
template <typename T>
T* random_buffer(int64_t n, uint32_t seed, float amp) {
    T* p = nullptr;
    ok(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    fill_kernel<T><<<blocks(n, 256), 256>>>(p, n, seed, amp);
    ok(cudaGetLastError(), "fill");
    return p;
}

double time_graph(cudaStream_t st, const std::function<void()>& body) { return graph_time_us(st, body, 20, 20); }

inline float to_float(float v) { return v; }
inline float to_float(bf16 v) { return __bfloat162float(v); }
inline float to_float(__half v) { return __half2float(v); }

template <typename T>
std::vector<float> download(const T* p, int64_t n) {
    std::vector<T> h(n);
    ok(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    std::vector<float> f(n);
    for (int64_t i = 0; i < n; ++i) f[i] = to_float(h[i]);
    return f;
}

// ||got - ref|| / ||ref||, in float64
template <typename Ref>
double rel_l2(const std::vector<float>& got, const std::vector<Ref>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
        den += double(ref[i]) * ref[i];
    }
    return std::sqrt(num / den);
}

struct Json {
    std::string body;
    void add(const std::string& key, const std::string& value) { body += (body.empty() ? "" : ",\n  ") + ("\"" + key + "\": " + value); }
    void num(const std::string& key, double v) {
        char b[64];
        std::snprintf(b, sizeof b, "%.4g", v);
        add(key, b);
    }
};

// A norm kernel's two forms (`vec` false: the rows read in loops; true: held in registers) on the same
// input: rel-L2 of the second's BF16 output against the first's (the sums add in another order) and
// microseconds per call of each. `norm(vec)` enqueues one call writing `out` (n values).
struct NormForms {
    double rel_l2, us_loop, us_vec;
};
NormForms compare_norm_forms(cudaStream_t st, const std::function<void(bool)>& norm, const bf16* out, int64_t n) {
    norm(false);
    ok(cudaStreamSynchronize(st), "norm, loop form");
    const std::vector<float> loop_form = download(out, n);
    norm(true);
    ok(cudaStreamSynchronize(st), "norm, rows in registers");
    ok(cudaGetLastError(), "norm");
    const double err = rel_l2(download(out, n), loop_form);
    return {err, time_graph(st, [&] { norm(false); }), time_graph(st, [&] { norm(true); })};
}

// The vision loop's small kernels at 2 images (512 tokens; SigLIP: width 1152, 16 heads of 72, FFN
// 4304), alone: the q/k/v split checked value for value against the host's F16 rounding of the same
// float32 sums, bias + GELU four columns per thread against one (outputs must be the same).
void bench_vision_kernels(cudaStream_t st, Json& js) {
    namespace vk = vision_kernels;
    constexpr int T = 512, W = 1152, heads = 16, d = 72, F = 4304, per_image = 256;
    float* x = random_buffer<float>(int64_t{T} * W, 20, 1.0f);
    float* vec = random_buffer<float>(3 * int64_t{W}, 21, 0.5f);  // norm weight, norm bias / the q, k, v biases
    float* qkv = random_buffer<float>(int64_t{T} * 3 * W, 22, 2.0f);
    float* u = random_buffer<float>(int64_t{T} * F, 23, 2.0f);
    float* up_b = random_buffer<float>(F, 24, 0.5f);
    float* scores = random_buffer<float>(int64_t{T} * heads * per_image, 25, 4.0f);
    bf16* hn = random_buffer<bf16>(int64_t{T} * W, 26, 1.0f);
    bf16 *g1 = random_buffer<bf16>(int64_t{T} * F, 27, 1.0f), *g4 = random_buffer<bf16>(int64_t{T} * F, 28, 1.0f);
    __half *q16 = random_buffer<__half>(int64_t{T} * W, 29, 1.0f), *k16 = random_buffer<__half>(int64_t{T} * W, 30, 1.0f),
           *v16 = random_buffer<__half>(int64_t{T} * W, 31, 1.0f), *p16 = random_buffer<__half>(int64_t{T} * heads * per_image, 32, 1.0f);
    ok(cudaDeviceSynchronize(), "vision inputs");

    auto split = [&] {
        vk::vision_qkv_kernel<<<T, kThreads, 0, st>>>(qkv, W, heads, d, per_image, vec, vec + W, vec + 2 * W, q16, k16, v16);
    };
    split();
    ok(cudaStreamSynchronize(st), "q/k/v split");
    ok(cudaGetLastError(), "q/k/v split");
    const std::vector<float> hq = download(qkv, int64_t{T} * 3 * W), hb = download(vec, 3 * int64_t{W});
    const std::vector<float> got[3] = {download(q16, int64_t{T} * W), download(k16, int64_t{T} * W), download(v16, int64_t{T} * W)};
    int64_t wrong = 0;
    for (int t = 0; t < T; ++t) {
        for (int i = 0; i < 3 * W; ++i) {
            const int part = i / W, c = i % W, image = t / per_image, n = t % per_image;
            const float want = __half2float(__float2half(hq[int64_t{t} * 3 * W + i] + hb[int64_t{part} * W + c]));
            wrong += got[part][((int64_t{image} * heads + c / d) * per_image + n) * d + c % d] != want;
        }
    }
    auto one = [&] {
        const int64_t n = int64_t{T} * F;
        vk::bias_gelu_kernel<<<blocks(n, kThreads), kThreads, 0, st>>>(u, up_b, F, n, g1, int64_t{F});
    };
    auto four = [&] { vk::launch_bias_gelu(st, u, up_b, F, T, g4, int64_t{F}); };
    one();
    four();
    ok(cudaStreamSynchronize(st), "bias + GELU");
    ok(cudaGetLastError(), "bias + GELU");
    const bool same = download(g1, int64_t{T} * F) == download(g4, int64_t{T} * F);
    const double t_split = time_graph(st, split), t_one = time_graph(st, one), t_four = time_graph(st, four);
    const NormForms ln = compare_norm_forms(st, [&](bool v) {
        vk::layer_norm_kernel<<<T, kThreads, 0, st>>>(x, W, nullptr, vec, vec + W, 1e-6f, hn, int64_t{W}, v);
    }, hn, int64_t{T} * W);
    const double t_norm = ln.us_loop;
    const double t_softmax = time_graph(st, [&] {
        const int64_t rows = int64_t{T} * heads;
        vk::softmax_rows_kernel<<<blocks(rows, kThreads / 32), kThreads, 0, st>>>(scores, rows, per_image, p16);
    });
    const double t_heads = time_graph(st, [&] { vk::vision_heads_kernel<<<T, kThreads, 0, st>>>(x, heads, d, per_image, hn, int64_t{W}); });
    std::printf("vision (2 images): layer norm %.2f us (rows in registers: %.2f us, rel-L2 %.1e), q/k/v split %.2f us (%lld of %lld values off the host's F16 rounding), "
                "softmax %.2f us, heads %.2f us, bias + GELU one column per thread %.2f us, four %.2f us, outputs %s\n",
                t_norm, ln.us_vec, ln.rel_l2, t_split, static_cast<long long>(wrong), static_cast<long long>(int64_t{T} * 3 * W), t_softmax, t_heads,
                t_one, t_four, same ? "identical" : "DIFFER");
    js.num("vision_layer_norm_us", t_norm);
    js.num("vision_layer_norm_vec_us", ln.us_vec);
    js.num("vision_layer_norm_vec_rel_l2", ln.rel_l2);
    js.num("vision_qkv_split_us", t_split);
    js.num("vision_qkv_split_wrong", static_cast<double>(wrong));
    js.num("vision_softmax_us", t_softmax);
    js.num("vision_heads_us", t_heads);
    js.num("vision_bias_gelu_one_us", t_one);
    js.num("vision_bias_gelu_four_us", t_four);
    js.add("vision_bias_gelu_identical", same ? "true" : "false");

    // attention on the split's q/k/v: the loop's batched cuBLAS form (scores, softmax, values, heads) against
    // the flash kernel (VLA_EDGE_CUDA_VISION_ATTENTION=flash), both against float64
    const int obs = 2 * heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(d)), one_f = 1.0f, zero_f = 0.0f;
    std::vector<int> ints;
    for (int i = 0; i < obs; ++i) ints.push_back(i * per_image);
    ints.insert(ints.end(), obs, per_image);
    int* dints = nullptr;
    float* o = nullptr;
    ok(cudaMalloc(&dints, ints.size() * sizeof(int)), "ints");
    ok(cudaMemcpy(dints, ints.data(), ints.size() * sizeof(int), cudaMemcpyHostToDevice), "ints");
    ok(cudaMalloc(&o, int64_t{T} * W * sizeof(float)), "o");
    cublasHandle_t blas = nullptr;
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(blas, st) != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "cuBLAS handle\n");
        std::exit(1);
    }
    auto batched = [&] {
        const long long qs = int64_t{per_image} * d, ss = int64_t{per_image} * per_image;
        cublasGemmStridedBatchedEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, per_image, per_image, d, &scale, k16, CUDA_R_16F, d, qs, q16,
                                   CUDA_R_16F, d, qs, &zero_f, scores, CUDA_R_32F, per_image, ss, obs, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT);
        const int64_t rows = int64_t{obs} * per_image;
        vk::softmax_rows_kernel<<<blocks(rows, kThreads / 32), kThreads, 0, st>>>(scores, rows, per_image, p16);
        cublasGemmStridedBatchedEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, d, per_image, per_image, &one_f, v16, CUDA_R_16F, d, qs, p16,
                                   CUDA_R_16F, per_image, ss, &zero_f, o, CUDA_R_32F, d, qs, obs, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT);
        vk::vision_heads_kernel<<<T, kThreads, 0, st>>>(o, heads, d, per_image, hn, int64_t{W});
    };
    const TileKernel fk = flash_kernel_for(d);
    ok(cudaFuncSetAttribute(fk.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(fk.smem)), "flash attribute");
    auto flash = [&] {
        launch_flash_attention(d, SplitPlan{1, (per_image + kFlashKeys - 1) / kFlashKeys * kFlashKeys}, 1, obs, per_image,
                               per_image, st, q16, k16, v16, dints, dints + obs, per_image, 1, scale, nullptr, nullptr, hn,
                               int64_t{W}, heads);
    };
    const std::vector<float> fq = download(q16, int64_t{T} * W), fk16 = download(k16, int64_t{T} * W), fv = download(v16, int64_t{T} * W);
    std::vector<double> ref(int64_t{T} * W);
    for (int b = 0; b < obs; ++b) {
        const int image = b / heads, h = b % heads;
        for (int r = 0; r < per_image; ++r) {
            const float* q = &fq[(int64_t{b} * per_image + r) * d];
            std::vector<double> sc(per_image);
            double m = -1e300, l = 0;
            for (int j = 0; j < per_image; ++j) {
                double acc = 0;
                for (int c = 0; c < d; ++c) acc += double(q[c]) * fk16[(int64_t{b} * per_image + j) * d + c];
                m = std::max(m, sc[j] = acc * scale);
            }
            for (double& v : sc) l += (v = std::exp(v - m));
            double* dst = &ref[(int64_t{image} * per_image + r) * W + h * d];
            for (int j = 0; j < per_image; ++j)
                for (int c = 0; c < d; ++c) dst[c] += sc[j] / l * fv[(int64_t{b} * per_image + j) * d + c];
        }
    }
    double err[2], us[2];
    int k = 0;
    for (const auto& form : {std::function<void()>(batched), std::function<void()>(flash)}) {
        ok(cudaMemsetAsync(hn, 0, int64_t{T} * W * sizeof(bf16), st), "clear");
        form();
        ok(cudaStreamSynchronize(st), "vision attention");
        ok(cudaGetLastError(), "vision attention");
        err[k] = rel_l2(download(hn, int64_t{T} * W), ref);
        us[k++] = time_graph(st, form);
    }
    std::printf("vision attention (2 images, head_dim %d): batched cuBLAS + softmax + heads %.2f us (rel-L2 %.2e), flash %.2f us "
                "(rel-L2 %.2e; BF16 output rounding ~2e-3)\n", d, us[0], err[0], us[1], err[1]);
    js.num("vision_attention_batched_us", us[0]);
    js.num("vision_attention_batched_rel_l2", err[0]);
    js.num("vision_attention_flash_us", us[1]);
    js.num("vision_attention_flash_rel_l2", err[1]);
    cublasDestroy(blas);
    for (void* p : std::initializer_list<void*>{x, vec, qkv, u, up_b, scores, hn, g1, g4, q16, k16, v16, p16, o,
                                                static_cast<void*>(dints)})
        cudaFree(p);
}

// Writes js to `path` (nothing for an empty path); false where the file cannot be written.
bool write_json(const std::string& path, const Json& js) {
    if (path.empty()) return true;
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return false;
    std::fprintf(f, "{\n  %s\n}\n", js.body.c_str());
    std::fclose(f);
    return true;
}

// One shape of a loop's layer products: rows x cols, accumulating (beta = 1) or not, its output
// rows ldy floats apart (0: packed), or written in BF16 (packed, not accumulating).
struct ProductShape {
    const char* name;
    int rows, cols;
    bool accumulate;
    int64_t ldy = 0;
    bool bf16_out = false;
};

// The layer products: cuBLAS's default against each cuBLASLt heuristic algorithm, raced by
// TunedProducts as the loops do, twice: hot (one matrix ten times over, its weights in L2 from the
// second call) and cold (one product after another over enough copies of the shape to pass 200 MB,
// more than the L2 holds: the chunk's case, where each layer's weights arrive from memory). Adds
// "products" (each shape, hot and cold) and the sums to `js`.
void race_products(const std::vector<ProductShape>& shapes, int T, const char* what, Json& js) {
    LoopStream io("kernel bench");  // the loop's stream, cuBLAS handle and workspace
    std::string prods;
    for (const bool cold : {false, true}) {
        TunedProducts tuned(io, cold);
        double sum_default = 0, sum_best = 0, sum_floor = 0;
        for (const ProductShape& sh : shapes) {
            const int64_t values = int64_t{sh.rows} * sh.cols, ldy = sh.ldy ? sh.ldy : sh.rows;
            const int copies = cold ? static_cast<int>(std::min<int64_t>(64, (200 << 20) / (2 * values) + 1)) : 1;
            std::vector<CudaMatrix> Ws;
            for (int i = 0; i < copies; ++i) {
                Ws.push_back(CudaMatrix{random_buffer<bf16>(values, 9 + 100 * i, 0.05f), CudaElem::bf16, sh.rows, sh.cols, sh.cols});
            }
            bf16* in = random_buffer<bf16>(int64_t{T} * sh.cols, 10, 1.0f);
            float* y = random_buffer<float>(int64_t{T} * ldy, 11, 1.0f);  // as BF16 too: twice the room it needs
            bf16* y16 = reinterpret_cast<bf16*>(y);
            ok(cudaDeviceSynchronize(), "inputs");  // filled on the legacy stream, which io's does not wait for
            auto run = [&](const CudaMatrix& W) {  // through TunedProducts::run, as the loops run it
                if (sh.bf16_out) {
                    tuned.run(W, in, T, y16);
                } else {
                    tuned.run(W, in, T, y, sh.accumulate, sh.ldy);
                }
            };
            if (sh.bf16_out) {
                tuned.tune(Ws, in, T, y16);
            } else {
                tuned.tune(Ws, in, T, y, sh.accumulate, sh.ldy);
            }
            ProductTiming mine;
            for (const ProductTiming& c : tuned.timings())
                if (c.rows == sh.rows && c.cols == sh.cols && c.accumulate == sh.accumulate && c.ldy == ldy &&
                    c.bf16_out == sh.bf16_out) {
                    mine = c;
                }
            // the chosen algorithm timed again, over the same matrices
            const double rerun = graph_time_us(io.stream, [&] {
                for (const CudaMatrix& W : Ws) run(W);
            }, cold ? 1 : 20, 20) / copies;
            const double floor_us = 1e6 * 2.0 * values / 3.35e12;  // weights once at the H100's datasheet bandwidth
            std::string each;
            for (size_t i = 0; i < mine.us.size(); ++i) each += (i ? ", " : "") + ("{\"" + mine.names[i] + "\": " + std::to_string(mine.us[i]) + "}");
            // our stream product's fastest form where the race offered it: the line alone says how far it is
            size_t best = 0;  // candidate 0 is cuBLAS's default, never a stream form: 0 says none was offered
            for (size_t i = 1; i < mine.us.size(); ++i)
                if (mine.names[i].rfind("stream", 0) == 0 && (!best || mine.us[i] < mine.us[best])) best = i;
            char stream_best[64] = "";
            if (best) std::snprintf(stream_best, sizeof stream_best, ", best stream %s %.2f us", mine.names[best].c_str(), mine.us[best]);
            std::printf("%s %-8s %5d x %5d, %d tokens, %d matrices: default %.2f us, chosen %s %.2f us (rerun %.2f) of %zu%s, "
                        "weight floor %.2f us\n", cold ? "cold" : "hot ", sh.name, sh.rows, sh.cols, T, mine.matrices, mine.us[0],
                        mine.names[mine.chosen].c_str(), mine.us[mine.chosen], rerun, mine.us.size(), stream_best, floor_us);
            if (!mine.rejected.empty()) std::printf("  REJECTED (differs from cuBLAS): %s\n", mine.rejected.c_str());
            prods += std::string(prods.empty() ? "" : ", ") + "{\"name\": \"" + sh.name + "\", \"rejected\": \"" +
                     mine.rejected + "\", \"cold\": " +
                     (cold ? "true" : "false") + ", \"tokens\": " + std::to_string(T) + ", \"matrices\": " +
                     std::to_string(mine.matrices) + ", \"default_us\": " + std::to_string(mine.us[0]) + ", \"chosen\": \"" +
                     mine.names[mine.chosen] + "\", \"chosen_rerun_us\": " + std::to_string(rerun) + ", \"candidates_us\": [" +
                     each + "], \"weight_floor_us\": " + std::to_string(floor_us) + "}";
            sum_default += mine.us[0];
            sum_best += rerun;
            sum_floor += floor_us;
            for (const CudaMatrix& W : Ws) cudaFree(const_cast<void*>(W.data));
            cudaFree(in);
            cudaFree(y);
        }
        std::printf("%s, %s: default %.1f us, chosen %.1f us, weight floor %.1f us\n", what, cold ? "cold" : "hot",
                    sum_default, sum_best, sum_floor);
        js.num(std::string("products_default_") + (cold ? "cold" : "hot") + "_us", sum_default);
        js.num(std::string("products_chosen_") + (cold ? "cold" : "hot") + "_us", sum_best);
    }
    js.add("products", "[" + prods + "]");
}

}  // namespace

int main(int argc, char** argv) {
    // our stream product joins every race here (opt-in in the loops until it has run on a GPU), so that
    // its candidates' times stand beside cuBLAS's; VLA_EDGE_CUDA_STREAM_PRODUCTS set outside wins
    setenv("VLA_EDGE_CUDA_STREAM_PRODUCTS", "1", 0);
    int keys_arg = 632, batch = 1, tokens = 50, head_dim = 256;
    std::string out_path, products_of;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--keys")) keys_arg = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(argv[i + 1]);  // query tokens: 50 (the chunk),
        else if (!std::strcmp(argv[i], "--out")) out_path = argv[i + 1];              // or the prefix's own (--keys too)
        else if (!std::strcmp(argv[i], "--head-dim")) head_dim = std::atoi(argv[i + 1]);  // 64 / 128: the other kernels' forms
        else if (!std::strcmp(argv[i], "--products")) products_of = argv[i + 1];  // vision / prefix: that loop's products only
    }
    if (!products_of.empty()) {  // the other loops' products at 2 views, raced as the expert's are below
        Json js;
        if (products_of == "vision") {  // SigLIP at 2 images (512 tokens): q, k, v into one row each, as the loop writes them
            js.add("loop", "\"vision\"");
            race_products({{"q/k/v", 1152, 1152, false, 3 * 1152}, {"out", 1152, 1152, true}, {"up", 4304, 1152, false},
                           {"down", 1152, 4304, true}, {"proj", 2048, 1152, false}},
                          512, "a vision layer's products and the projection", js);
        } else if (products_of == "prefix") {  // Gemma 2B at 582 tokens, gate/up written in BF16 as the loop does
            js.add("loop", "\"prefix\"");
            race_products({{"qkv", 2560, 2048, false}, {"out", 2048, 2048, true}, {"gate_up", 32768, 2048, false, 0, true},
                           {"down", 2048, 16384, true}},
                          582, "a prefix layer's four products", js);
        } else {
            std::fprintf(stderr, "--products must be vision or prefix, not %s\n", products_of.c_str());
            return 2;
        }
        return write_json(out_path, js) ? 0 : 1;
    }
    if (head_dim != 64 && head_dim != 128 && head_dim != 256) {
        std::fprintf(stderr, "--head-dim must be 64, 128 or 256, not %d\n", head_dim);
        return 2;
    }
    // pi0.5's action expert (Gemma 300M): width 1024, 8 query heads of 256 over one K/V head, FFN 4096
    const int E = 1024, heads = 8, D = head_dim, F = 4096, H = tokens, A = 32, B = batch, T = B * H;
    const int rows_total = H * heads, rows_ld = (rows_total + 15) / 16 * 16;
    const int keys = keys_arg, keys16 = (keys + 15) / 16 * 16;
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    cudaDeviceProp prop;
    ok(cudaGetDeviceProperties(&prop, 0), "device");
    std::printf("%s, %d SMs; %d observation(s) of %d keys, %d query rows each, head_dim %d\n", prop.name,
                prop.multiProcessorCount, B, keys, rows_total, D);
    cudaStream_t st;
    ok(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
    Json js;
    js.add("gpu", "\"" + std::string(prop.name) + "\"");
    js.num("keys", keys);
    js.num("head_dim", D);
    js.num("batch", B);

    // ---- attention: both forms against a float64 reference
    const int64_t cache_rows = int64_t{B} * keys16 + 64;
    __half* q16 = random_buffer<__half>((int64_t{B} * rows_total + 16) * D, 1, 1.0f);
    __half* kc = random_buffer<__half>(cache_rows * D, 2, 1.0f);
    __half* vc = random_buffer<__half>(cache_rows * D, 3, 1.0f);
    std::vector<int> ints;
    for (int b = 0; b < B; ++b) ints.push_back(b * keys16);
    for (int b = 0; b < B; ++b) ints.push_back(keys);
    int* dints;
    ok(cudaMalloc(&dints, ints.size() * sizeof(int)), "ints");
    ok(cudaMemcpy(dints, ints.data(), ints.size() * sizeof(int), cudaMemcpyHostToDevice), "ints");
    const int* base = dints;
    const int* okeys = dints + B;
    const int64_t part_rows = int64_t{B} * ((keys + 31) / 32) * rows_ld;  // enough for the smallest split
    float* part_o;
    float2* part_ml;
    bf16* out;
    ok(cudaMalloc(&part_o, part_rows * D * sizeof(float)), "part_o");
    ok(cudaMalloc(&part_ml, part_rows * sizeof(float2)), "part_ml");
    ok(cudaMalloc(&out, int64_t{T} * heads * D * sizeof(bf16)), "out");
    auto merge = [&](int keys_per_split, int ld, int splits, int merge_warps = 1) {
        launch_attention_merge(merge_warps, st, B, H, heads, D, part_o, part_ml, okeys, keys_per_split, ld, splits, scale, out,
                               heads * D);
    };
    // whether two ways of writing `out` write the same bits (each run once, `out` cleared between them)
    auto same_outputs = [&](const std::function<void()>& a, const std::function<void()>& b) {
        a();
        ok(cudaStreamSynchronize(st), "the first form");
        const std::vector<float> want = download(out, int64_t{T} * heads * D);
        ok(cudaMemsetAsync(out, 0, int64_t{T} * heads * D * sizeof(bf16), st), "clear");
        b();
        ok(cudaStreamSynchronize(st), "the second form");
        return download(out, int64_t{T} * heads * D) == want;
    };
    // one attention form's split kernel (as the loop launches it); returns its number of splits
    auto attention = [&](AttentionForm form) {
        const int per = keys_per_split(form), splits = (keys + per - 1) / per;
        launch_attention(D, form, B, rows_total, attention_rows_ld(form, rows_total), splits, st, q16, kc, vc, base, okeys, H,
                         heads, scale, part_o, part_ml);
        return splits;
    };
    auto with_merge = [&](AttentionForm form, int merge_warps = 1) {
        const int splits = attention(form);
        merge(keys_per_split(form), attention_rows_ld(form, rows_total), splits, form == AttentionForm::split ? 0 : merge_warps);
    };
    for (const TileKernel& k : {tile_kernel_for(D, AttentionForm::tile64), tile_kernel_for(D, AttentionForm::tile32),
                                tile_kernel_for(D, AttentionForm::tile64w8), tile_kernel_for(D, AttentionForm::tile128w8)}) {
        ok(cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(k.smem)),
           "shared memory attribute");
    }
    auto split_form = [&] { with_merge(AttentionForm::split); };
    auto tile64 = [&] { with_merge(AttentionForm::tile64); };
    auto tile32 = [&] { with_merge(AttentionForm::tile32); };
    auto tile64_w2 = [&] { with_merge(AttentionForm::tile64, 2); };  // two warps per row in the merge
    auto tile64w8 = [&] { with_merge(AttentionForm::tile64w8); };  // the prefix loop's default
    auto tile64w8_w2 = [&] { with_merge(AttentionForm::tile64w8, 2); };  // the expert loop's default
    auto tile128w8 = [&] { with_merge(AttentionForm::tile128w8); };  // opt-in for the prefix loop
    {
        const TileKernel k = flash_kernel_for(D);
        ok(cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(k.smem)),
           "shared memory attribute");
    }
    // the flash form (opt-in for the prefix loop) with the plan the loop takes, and with 1 / 2 / 4 splits
    auto flash = [&](int forced) {
        const SplitPlan plan = flash_plan(rows_total, B, keys, prop.multiProcessorCount, forced);
        return [&, plan] {
            launch_flash_attention(D, plan, 1, B, rows_total, rows_ld, st, q16, kc, vc, base, okeys, H, heads, scale, part_o,
                                   part_ml, out, heads * D);
        };
    };
    const SplitPlan flash_auto = flash_plan(rows_total, B, keys, prop.multiProcessorCount);
    std::printf("flash plan: %d split(s) of %d keys\n", flash_auto.splits, flash_auto.keys);
    js.num("flash_plan_splits", flash_auto.splits);
    const std::vector<float> hq = download(q16, int64_t{B} * rows_total * D), hk = download(kc, cache_rows * D),
                             hv = download(vc, cache_rows * D);
    std::vector<double> ref(int64_t{T} * heads * D);
    for (int b = 0; b < B; ++b) {
        for (int row = 0; row < rows_total; ++row) {
            const float* q = &hq[(int64_t{b} * rows_total + row) * D];
            std::vector<double> sc(keys);
            double m = -1e300;
            for (int j = 0; j < keys; ++j) {
                const float* k = &hk[(int64_t{b} * keys16 + j) * D];
                double d = 0;
                for (int c = 0; c < D; ++c) d += double(q[c]) * k[c];
                sc[j] = d * scale;
                m = std::max(m, sc[j]);
            }
            double l = 0;
            for (int j = 0; j < keys; ++j) l += (sc[j] = std::exp(sc[j] - m));
            double* o = &ref[((int64_t{b} * H + row / heads) * heads + row % heads) * D];
            for (int j = 0; j < keys; ++j) {
                const float* v = &hv[(int64_t{b} * keys16 + j) * D];
                for (int c = 0; c < D; ++c) o[c] += sc[j] / l * v[c];
            }
        }
    }
    for (auto& [name, form] : std::vector<std::pair<std::string, std::function<void()>>>{{"split128", split_form}, {"tile64", tile64}, {"tile32", tile32}, {"tile64_merge2", tile64_w2}, {"tile64w8", tile64w8}, {"tile64w8_merge2", tile64w8_w2}, {"tile128w8", tile128w8}, {"flash", flash(0)}, {"flash_s1", flash(1)}, {"flash_s2", flash(2)}, {"flash_s4", flash(4)}}) {
        ok(cudaMemsetAsync(out, 0, int64_t{T} * heads * D * sizeof(bf16), st), "clear");
        form();
        ok(cudaStreamSynchronize(st), name.c_str());
        const double err = rel_l2(download(out, int64_t{T} * heads * D), ref);
        const double us = time_graph(st, form);
        std::printf("attention %-15s rel-L2 %.2e (BF16 output rounding ~2e-3)  %.2f us per call\n", name.c_str(), err, us);
        js.num("attention_" + name + "_rel_l2", err);
        js.num("attention_" + name + "_us", us);
    }
    const double merge2 = time_graph(st, [&] { merge(64, rows_ld, (keys + 63) / 64, 2); }),
                 merge1 = time_graph(st, [&] { merge(64, rows_ld, (keys + 63) / 64, 1); });
    std::printf("  alone: tile64w8 %.2f us, tile128w8 %.2f us (its merge of 128-key splits %.2f us)\n",
                time_graph(st, [&] { attention(AttentionForm::tile64w8); }),
                time_graph(st, [&] { attention(AttentionForm::tile128w8); }),
                time_graph(st, [&] { merge(128, rows_ld, (keys + 127) / 128, 1); }));
    std::printf("  alone: tile64 %.2f us, tile32 %.2f us, merge of 64-key splits: two warps per row %.2f us, one %.2f us, "
                "one thread per column %.2f us; of 32-key splits %.2f us\n",
                time_graph(st, [&] { attention(AttentionForm::tile64); }), time_graph(st, [&] { attention(AttentionForm::tile32); }),
                merge2, merge1, time_graph(st, [&] { merge(64, rows_ld, (keys + 63) / 64, 0); }),
                time_graph(st, [&] { merge(32, rows_ld, (keys + 31) / 32); }));
    js.num("merge_two_warps_us", merge2);
    js.num("merge_one_warp_us", merge1);
    {  // the two-warp merge with all loads first (the default, where a launch has at most 16 splits) against its
       // loop over the splits: the same bits, one round trip to L2 instead of three
        const int splits = (keys + 63) / 64;
        auto merge_with = [&](auto* kernel) {
            return [&, kernel] {
                launch_kernel(kernel, dim3(blocks(2 * int64_t{H} * heads, kMergeWarps), B), 32 * kMergeWarps, 0, st, part_o,
                              part_ml, okeys, 64, H, heads, rows_ld, splits, scale, out, int64_t{heads} * D);
            };
        };
        auto* first = D == 64 ? attention_merge_rows_kernel<64, 2, true> : D == 128 ? attention_merge_rows_kernel<128, 2, true>
                                                                                  : attention_merge_rows_kernel<256, 2, true>;
        auto* loop = D == 64 ? attention_merge_rows_kernel<64, 2, false> : D == 128 ? attention_merge_rows_kernel<128, 2, false>
                                                                                 : attention_merge_rows_kernel<256, 2, false>;
        attention(AttentionForm::tile64w8);
        const bool same = same_outputs(merge_with(loop), merge_with(first));
        const double t_first = time_graph(st, merge_with(first)), t_loop = time_graph(st, merge_with(loop));
        std::printf("  merge two warps per row, %d splits: loads first %.2f us, the loop over splits %.2f us, outputs %s\n",
                    splits, t_first, t_loop, same ? "identical" : "DIFFER");
        js.num("merge_loads_first_us", t_first);
        js.num("merge_loop_us", t_loop);
        js.add("merge_loads_first_identical", same ? "true" : "false");
    }

    // ---- the small kernels, alone
    float* x = random_buffer<float>(int64_t{T} * E, 4, 1.0f);
    float* mod = random_buffer<float>(3 * E, 5, 0.5f);
    bf16* hn = random_buffer<bf16>(int64_t{T} * F, 6, 1.0f);
    float* qkv = random_buffer<float>(int64_t{T} * (heads + 2) * D, 7, 1.0f);
    float* gu = random_buffer<float>(int64_t{T} * 2 * F, 8, 1.0f);
    int* pos;
    std::vector<int> hp;
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) hp.push_back(keys - H + j);
    for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) hp.push_back(b * keys16 + keys - H + j);
    ok(cudaMalloc(&pos, hp.size() * sizeof(int)), "pos");
    ok(cudaMemcpy(pos, hp.data(), hp.size() * sizeof(int), cudaMemcpyHostToDevice), "pos");
    const float theta_scale = std::pow(10000.0f, -2.0f / D);
    const NormForms an = compare_norm_forms(st, [&](bool v) {
        ada_norm_kernel<<<T, kThreads, 0, st>>>(x, E, mod, mod + E, 1e-6f, hn, int64_t{E}, v);
    }, hn, int64_t{T} * E);
    const double t_norm = an.us_loop;
    std::printf("ada_norm rows in registers %.2f us, rel-L2 %.1e against the loop form\n", an.us_vec, an.rel_l2);
    js.num("ada_norm_vec_us", an.us_vec);
    js.num("ada_norm_vec_rel_l2", an.rel_l2);
    const double t_rope = time_graph(st, [&] {
        launch_rope_cache(st, T, qkv, heads, D, pos, pos + T, theta_scale, q16, kc, vc);
    });
    const double t_geglu = time_graph(st, [&] { launch_geglu(st, static_cast<const float*>(gu), F, T, hn, int64_t{F}); });
    std::printf("ada_norm %.2f us, rope+cache %.2f us, geglu %.2f us\n", t_norm, t_rope, t_geglu);
    js.num("ada_norm_us", t_norm);
    js.num("rope_cache_us", t_rope);
    js.num("geglu_us", t_geglu);
    {  // RoPE in the attention (the expert loop's VLA_EDGE_CUDA_ROPE_IN_ATTENTION=1) against the rope kernel before
       // it, each with the expert's default attention and merge: the same outputs, one launch fewer per layer and step
        const TileKernel k = tile_kernel_for(D, AttentionForm::tile64w8, true);
        ok(cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(k.smem)),
           "shared memory attribute");
        float* cs;
        ok(cudaMalloc(&cs, int64_t{T} * D * sizeof(float)), "rope table");
        auto table = [&] { launch_kernel(rope_table_kernel, T, std::max(32, D / 2), 0, st, pos, D / 2, theta_scale, cs); };
        const int splits = (keys + 63) / 64;
        auto apart = [&] {
            launch_rope_cache(st, T, qkv, heads, D, pos, pos + T, theta_scale, q16, kc, vc);
            launch_attention(D, AttentionForm::tile64w8, B, rows_total, rows_ld, splits, st, q16, kc, vc, base, okeys, H, heads,
                             scale, part_o, part_ml);
            merge(64, rows_ld, splits, 2);
        };
        auto in = [&] {
            launch_attention(D, AttentionForm::tile64w8, B, rows_total, rows_ld, splits, st, nullptr, kc, vc, base, okeys, H,
                             heads, scale, part_o, part_ml, TileRope{qkv, cs, heads, H});
            merge(64, rows_ld, splits, 2);
        };
        // the merge in the tile kernel's own cooperative launch (VLA_EDGE_CUDA_MERGE_IN_ATTENTION=1), with and
        // without RoPE in it, against tile64w8 and its merge kernel
        unsigned* words;
        ok(cudaMalloc(&words, 2 * sizeof(unsigned)), "grid barrier");
        ok(cudaMemset(words, 0, 2 * sizeof(unsigned)), "grid barrier");
        for (bool rope : {false, true}) {
            const TileKernel km = tile_kernel_for(D, AttentionForm::tile64w8, rope, true);
            ok(cudaFuncSetAttribute(km.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(km.smem)),
               "shared memory attribute");
        }
        const TileMerge into{out, int64_t{heads} * D, H, heads, GridBarrier{words, words + 1}};
        auto merged_in = [&](bool rope) {
            return [&, rope] {
                launch_attention(D, AttentionForm::tile64w8, B, rows_total, rows_ld, splits, st, rope ? nullptr : q16, kc, vc,
                                 base, okeys, H, heads, scale, part_o, part_ml, rope ? TileRope{qkv, cs, heads, H} : TileRope{},
                                 into);
            };
        };
        auto plain = [&] {
            launch_attention(D, AttentionForm::tile64w8, B, rows_total, rows_ld, splits, st, q16, kc, vc, base, okeys, H, heads,
                             scale, part_o, part_ml);
            merge(64, rows_ld, splits, 2);
        };
        table();
        const bool same = same_outputs(apart, in);
        // each against its own form with the merge kernel
        const bool same_merge_in = same_outputs(plain, merged_in(false)) && same_outputs(in, merged_in(true));
        // one line and four JSON keys per fused form: its time, the time of what it replaces, a third, identical outputs
        auto report = [&](const char* what, const char* key, double t_in, const char* apart, double t_apart, const char* third,
                          double t_third, bool same_bits) {
            std::printf("%s: %.2f us (%s %.2f us; %s %.2f us), outputs %s\n", what, t_in, apart, t_apart, third, t_third,
                        same_bits ? "identical" : "DIFFER");
            js.num(std::string(key) + "_us", t_in);
            js.num(std::string(key) + "_apart_us", t_apart);
            js.num(std::string(key) + "_third_us", t_third);
            js.add(std::string(key) + "_identical", same_bits ? "true" : "false");
        };
        report("merge in the attention's launch", "merge_in_attention", time_graph(st, merged_in(false)),
               "tile64w8 + merge kernel", time_graph(st, plain), "with RoPE in it too", time_graph(st, merged_in(true)),
               same_merge_in);
        for (int grid : {blocks(rows_total, kTileRows) * splits * B, prop.multiProcessorCount}) {  // the expert's grid, one per SM
            auto probe = [&](auto* kernel) {
                return [&, kernel] { launch_cooperative(kernel, grid, 64 * kTileWarps, 0, st, GridBarrier{words, words + 1}); };
            };
            const double t0 = time_graph(st, probe(barrier_probe_kernel<0>)), t8 = time_graph(st, probe(barrier_probe_kernel<8>));
            std::printf("grid barrier over %d blocks of %d threads: %.2f us each (8 in a row %.2f us, none %.2f us)\n", grid,
                        64 * kTileWarps, (t8 - t0) / 8, t8, t0);
            js.num("grid_barrier_us_" + std::to_string(grid) + "_blocks", (t8 - t0) / 8);
        }
        ok(cudaFree(words), "grid barrier");
        report("RoPE in the attention", "rope_in_attention", time_graph(st, in), "rope + tile64w8 + merge 2 apart",
               time_graph(st, apart), "the angle table, once a chunk", time_graph(st, table), same);
        ok(cudaFree(cs), "rope table");
    }
    {  // the prefix loop's GeGLU at 2 views (582 tokens, Gemma 2B's FFN 16384, BF16 in): one element per
       // thread against eight (launch_geglu's form), whose outputs must be the same
        const int Tp = 582, Fp = 16384;
        const int64_t n = int64_t{Tp} * Fp;
        bf16* gup = random_buffer<bf16>(2 * n, 12, 2.0f);
        bf16 *g1 = random_buffer<bf16>(n, 13, 1.0f), *g8 = random_buffer<bf16>(n, 14, 1.0f);
        ok(cudaDeviceSynchronize(), "inputs");
        auto one = [&] { geglu_kernel<bf16><<<blocks(n, kThreads), kThreads, 0, st>>>(gup, Fp, n, g1, int64_t{Fp}); };
        auto eight = [&] { launch_geglu(st, static_cast<const bf16*>(gup), Fp, Tp, g8, int64_t{Fp}); };
        one();
        eight();
        ok(cudaStreamSynchronize(st), "geglu");
        ok(cudaGetLastError(), "geglu");
        const bool same = download(g1, n) == download(g8, n);
        const double t1 = time_graph(st, one), t8 = time_graph(st, eight);
        std::printf("prefix geglu (582 x 16384, BF16 in): one element per thread %.2f us, eight %.2f us, outputs %s\n", t1, t8,
                    same ? "identical" : "DIFFER");
        js.num("prefix_geglu_one_us", t1);
        js.num("prefix_geglu_eight_us", t8);
        js.add("prefix_geglu_identical", same ? "true" : "false");
        cudaFree(gup);
        cudaFree(g1);
        cudaFree(g8);
    }
    (void)A;
    bench_vision_kernels(st, js);

    // ---- the layer products, at the expert's shapes
    const std::vector<ProductShape> expert_shapes = {{"qkv", (heads + 2) * D, E, false}, {"out", E, heads * D, true},
                                                     {"gate_up", 2 * F, E, false}, {"down", E, F, true}};
    race_products(expert_shapes, T, "a layer's four products", js);
    return write_json(out_path, js) ? 0 : 1;
}
