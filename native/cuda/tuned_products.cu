#include "tuned_products.h"

#include <cmath>
#include <stdexcept>

#include "graph_timer.cuh"
#include "stream_product.cuh"

namespace vla_edge {

namespace {

void check(cublasStatus_t s, const char* what) { loop_check(s, "tuned products", what); }

void check(cudaError_t e, const char* what) { loop_check(e, "tuned products", what); }

constexpr int kOffers = 16;  // cuBLASLt heuristic results raced per shape

std::vector<float> download(const float* y, size_t n) {
    std::vector<float> h(n);
    check(cudaMemcpy(h.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost), "reading a product back");
    return h;
}

// ||got - scale * want|| / ||scale * want||
double rel_l2(const std::vector<float>& got, const std::vector<float>& want, double scale) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double w = scale * want[i], d = got[i] - w;
        num += d * d;
        den += w * w;
    }
    return den > 0.0 ? std::sqrt(num / den) : (num > 0.0 ? INFINITY : 0.0);
}

}  // namespace

TunedProducts::TunedProducts(const LoopStream& io, bool stream) : io_(io), stream_(stream) {
    check(cublasLtCreate(&lt_), "creating a cuBLASLt handle");
    int device = 0;
    check(cudaGetDevice(&device), "the current device");
    check(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device), "device attributes");
}

TunedProducts::~TunedProducts() {
    for (auto& [key, c] : choices_) {
        if (c.a) cublasLtMatrixLayoutDestroy(c.a);
        if (c.b) cublasLtMatrixLayoutDestroy(c.b);
        if (c.c) cublasLtMatrixLayoutDestroy(c.c);
        if (c.desc) cublasLtMatmulDescDestroy(c.desc);
    }
    if (lt_) cublasLtDestroy(lt_);
}

void TunedProducts::lt_product(const Choice& c, const cublasLtMatmulAlgo_t& algo, const CudaMatrix& W,
                               const __nv_bfloat16* x, float* y, bool accumulate) const {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    check(cublasLtMatmul(lt_, c.desc, &alpha, W.data, c.a, x, c.b, &beta, y, c.c, y, c.c, &algo, io_.workspace,
                         LoopStream::kWorkspace, io_.stream),
          "cuBLASLt product");
}

void TunedProducts::tune(const CudaMatrix& W, const __nv_bfloat16* x, int T, float* y, bool accumulate) {
    const int rows = static_cast<int>(W.rows), stride = static_cast<int>(W.stride);
    const Key key{rows, stride, T, accumulate};
    if (choices_.count(key)) return;
    Choice c;
    c.timing.rows = rows;
    c.timing.cols = stride;
    c.timing.tokens = T;
    c.timing.accumulate = accumulate;
    const std::vector<int> stream_splits = stream_ ? checked_stream_splits(c, W, x, T, y, accumulate) : std::vector<int>{};
    c.timing.names.push_back("cublas");
    c.timing.us.push_back(graph_time_us(io_.stream, [&] { io_.product(W, x, T, y, accumulate ? 1.0f : 0.0f); }));
    // W is row-major [rows][stride], i.e. column-major stride x rows, used transposed
    check(cublasLtMatmulDescCreate(&c.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul descriptor");
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t), "transpose A");
    check(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n), "transpose B");
    check(cublasLtMatrixLayoutCreate(&c.a, CUDA_R_16BF, stride, rows, stride), "layout of W");
    check(cublasLtMatrixLayoutCreate(&c.b, CUDA_R_16BF, stride, T, stride), "layout of x");
    check(cublasLtMatrixLayoutCreate(&c.c, CUDA_R_32F, rows, T, rows), "layout of y");
    cublasLtMatmulPreference_t pref = nullptr;
    check(cublasLtMatmulPreferenceCreate(&pref), "preference");
    cublasLtMatmulHeuristicResult_t offers[kOffers];
    int found = 0;
    const size_t workspace = LoopStream::kWorkspace;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                             sizeof workspace);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulAlgoGetHeuristic(lt_, c.desc, c.a, c.b, c.c, c.c, pref, kOffers, offers, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS) found = 0;  // no offers: cuBLAS's default stays
    for (int i = 0; i < found; ++i) {
        if (offers[i].state != CUBLAS_STATUS_SUCCESS) continue;
        c.timing.names.push_back("lt" + std::to_string(i));
        c.timing.us.push_back(graph_time_us(io_.stream, [&] { lt_product(c, offers[i].algo, W, x, y, accumulate); }));
        if (c.timing.us.back() < c.timing.us[c.timing.chosen]) {
            c.timing.chosen = static_cast<int>(c.timing.us.size()) - 1;
            c.algo = offers[i].algo;
            c.kind = Kind::lt;
        }
    }
    const float beta = accumulate ? 1.0f : 0.0f;
    for (int splits : stream_splits) {
        c.timing.names.push_back("stream/" + std::to_string(splits));
        c.timing.us.push_back(graph_time_us(io_.stream, [&] {
            stream_product::launch_stream_product(io_.stream, static_cast<const __nv_bfloat16*>(W.data), rows, stride, stride, x,
                                                  T, y, beta, splits);
        }));
        if (c.timing.us.back() < c.timing.us[c.timing.chosen]) {
            c.timing.chosen = static_cast<int>(c.timing.us.size()) - 1;
            c.kind = Kind::stream;
            c.splits = splits;
        }
    }
    choices_.emplace(key, c);
}

std::vector<int> TunedProducts::checked_stream_splits(Choice& c, const CudaMatrix& W, const __nv_bfloat16* x, int T, float* y,
                                                      bool accumulate) const {
    const int rows = static_cast<int>(W.rows), stride = static_cast<int>(W.stride);
    const auto* w = static_cast<const __nv_bfloat16*>(W.data);
    if (!stream_product::stream_product_fits(w, rows, stride, stride, x, T)) return {};
    const size_t n = static_cast<size_t>(T) * rows;
    io_.product(W, x, T, y, 0.0f);
    check(cudaStreamSynchronize(io_.stream), "cuBLAS's product");
    const std::vector<float> want = download(y, n);
    std::vector<int> ok;
    for (int splits : stream_product::stream_product_splits(rows, stride, sms_).n) {
        if (splits == 0) continue;
        // accumulating, y starts as W x and must end as 2 W x; otherwise it starts as garbage (the
        // last check's output) and must end as W x
        if (accumulate) {
            check(cudaMemcpy(y, want.data(), n * sizeof(float), cudaMemcpyHostToDevice), "restoring the product");
        }
        const bool launched = stream_product::launch_stream_product(io_.stream, w, rows, stride, stride, x, T, y,
                                                                    accumulate ? 1.0f : 0.0f, splits);
        check(cudaStreamSynchronize(io_.stream), "the stream product");
        check(cudaGetLastError(), "the stream product");
        const double err = launched ? rel_l2(download(y, n), want, accumulate ? 2.0 : 1.0) : INFINITY;
        if (err <= 1e-3) {
            ok.push_back(splits);
        } else {
            c.timing.rejected.push_back("stream/" + std::to_string(splits) + ": rel-L2 " + std::to_string(err));
        }
    }
    return ok;
}

void TunedProducts::run(const CudaMatrix& W, const __nv_bfloat16* x, int T, float* y, bool accumulate) const {
    const auto it = choices_.find(Key{static_cast<int>(W.rows), static_cast<int>(W.stride), T, accumulate});
    const Kind kind = it == choices_.end() ? Kind::cublas : it->second.kind;
    if (kind == Kind::lt) {
        lt_product(it->second, it->second.algo, W, x, y, accumulate);
    } else if (kind == Kind::stream) {
        stream_product::launch_stream_product(io_.stream, static_cast<const __nv_bfloat16*>(W.data), static_cast<int>(W.rows),
                                              static_cast<int>(W.stride), W.stride, x, T, y, accumulate ? 1.0f : 0.0f,
                                              it->second.splits);
    } else {
        io_.product(W, x, T, y, accumulate ? 1.0f : 0.0f);
    }
}

std::vector<ProductTiming> TunedProducts::timings() const {
    std::vector<ProductTiming> out;
    for (const auto& [key, c] : choices_) out.push_back(c.timing);
    return out;
}

std::string TunedProducts::describe() const {
    int lt = 0, stream = 0;
    for (const auto& [key, c] : choices_) {
        lt += c.kind == Kind::lt ? 1 : 0;
        stream += c.kind == Kind::stream ? 1 : 0;
    }
    return std::to_string(choices_.size()) + " product shapes timed: " + std::to_string(lt) + " cuBLASLt, " +
           (stream_ ? std::to_string(stream) + " stream, " : std::string()) + std::to_string(choices_.size() - lt - stream) +
           " cuBLAS default";
}

}  // namespace vla_edge
