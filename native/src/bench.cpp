#include "bench.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <stdexcept>
#include <vector>

#include "cpu_extra_buffers.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "quantize.h"

namespace vla_edge {

double bench_matmul(const std::string& type_name, int n_out, int n_in, int n_tokens, int threads, int reps,
                    const std::string& layout) {
    if (n_out <= 0 || n_in <= 0 || n_tokens <= 0 || threads <= 0 || reps <= 0) {
        throw std::invalid_argument("bench_matmul: all sizes, threads and reps must be positive");
    }
    if (layout != "stored" && layout != "repacked") {
        throw std::invalid_argument("bench_matmul: layout must be 'stored' or 'repacked', got '" + layout + "'");
    }
    const ggml_type type = type_from_name(type_name);
    const size_t w_bytes = ggml_row_size(type, n_in) * n_out;
    const size_t x_bytes = sizeof(float) * static_cast<size_t>(n_in) * n_tokens;
    const size_t y_bytes = sizeof(float) * static_cast<size_t>(n_out) * n_tokens;
    // Small products are run `batch` at a time in one graph, as the pipeline runs them: one
    // graph compute (and thread start) per ~0.2 GFLOP instead of per product.
    const double flop = 2.0 * n_out * n_in * n_tokens;
    const int batch = static_cast<int>(std::clamp(2e8 / flop, 1.0, 64.0));
    ggml_init_params p{w_bytes + x_bytes + batch * y_bytes + (batch + 16) * ggml_tensor_overhead() +
                           ggml_graph_overhead() + (1 << 20),
                       nullptr, false};
    ggml_context* ctx = ggml_init(p);
    if (!ctx) throw std::runtime_error("bench_matmul: cannot allocate " + std::to_string(p.mem_size) + " bytes");
    ggml_tensor* w = ggml_new_tensor_2d(ctx, type, n_in, n_out);
    ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_in, n_tokens);
    std::mt19937 gen(1234);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> values(static_cast<size_t>(n_in) * n_out);
    for (float& v : values) v = normal(gen);
    if (type == GGML_TYPE_F32) {
        std::copy(values.begin(), values.end(), static_cast<float*>(w->data));
    } else {
        quantize_rows(type, values.data(), w->data, n_out, n_in);
    }
    // Repacked: the same bytes, moved into the extra buffer type's layout; the product then runs on
    // that layout's kernels (ggml_graph_compute dispatches on the weight's buffer type).
    ggml_backend_buffer_t repacked = nullptr;
    if (layout == "repacked") {
        ggml_backend_buffer_type_t buft = cpu_extra_buffer_for(w);
        if (!buft) {
            ggml_free(ctx);
            return -1.0;
        }
        void* stored = w->data;
        const size_t align = ggml_backend_buft_get_alignment(buft);
        repacked = ggml_backend_buft_alloc_buffer(buft, ggml_backend_buft_get_alloc_size(buft, w) + align);
        w->data = nullptr;
        ggml_tallocr talloc = ggml_tallocr_new(repacked);
        if (!repacked || ggml_tallocr_alloc(&talloc, w) != GGML_STATUS_SUCCESS) {
            if (repacked) ggml_backend_buffer_free(repacked);
            ggml_free(ctx);
            throw std::runtime_error("bench_matmul: cannot allocate the repacked weight");
        }
        ggml_backend_tensor_set(w, stored, 0, ggml_nbytes(w));
    }
    float* xd = static_cast<float*>(x->data);
    for (size_t i = 0; i < static_cast<size_t>(n_in) * n_tokens; ++i) xd[i] = normal(gen);
    ggml_cgraph* gf = ggml_new_graph(ctx);
    for (int b = 0; b < batch; ++b) ggml_build_forward_expand(gf, ggml_mul_mat(ctx, w, x));
    // the work buffer (activations converted to the weight's vec_dot type, per-thread scratch)
    // is sized by ggml's own plan for this thread count
    ggml_cplan plan = ggml_graph_plan(gf, threads, nullptr);
    std::vector<uint8_t> work(plan.work_size);
    plan.work_data = work.data();
    auto done = [&] {
        ggml_free(ctx);
        if (repacked) ggml_backend_buffer_free(repacked);
    };
    auto compute = [&] {
        if (ggml_graph_compute(gf, &plan) != GGML_STATUS_SUCCESS) {
            done();
            throw std::runtime_error("bench_matmul: ggml_graph_compute failed");
        }
    };
    compute();  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) compute();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / (static_cast<double>(reps) * batch);
    done();
    return s;
}

}  // namespace vla_edge
