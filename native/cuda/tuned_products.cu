#include "tuned_products.h"

#include <cstdlib>
#include <functional>
#include <stdexcept>

#include "graph_timer.cuh"

namespace vla_edge {

namespace {

void check(cublasStatus_t s, const char* what) { loop_check(s, "tuned products", what); }

constexpr int kOffers = 16;  // cuBLASLt heuristic results raced per shape

}  // namespace

TunedProducts::TunedProducts(const LoopStream& io, bool cold, bool race) : io_(io), hot_(!cold), race_(race) {
    if (race_) check(cublasLtCreate(&lt_), "creating a cuBLASLt handle");
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
                               const __nv_bfloat16* x, void* y, bool accumulate) const {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    check(cublasLtMatmul(lt_, c.desc, &alpha, W.data, c.a, x, c.b, &beta, y, c.c, y, c.c, &algo, io_.workspace,
                         LoopStream::kWorkspace, io_.stream),
          "cuBLASLt product");
}

void TunedProducts::default_product(const CudaMatrix& W, const __nv_bfloat16* x, int T, const Out& out,
                                    bool accumulate) const {
    if (out.type == CUDA_R_16BF) {
        io_.product_bf16(W, x, T, static_cast<__nv_bfloat16*>(out.y));
    } else {
        io_.product(W, x, T, static_cast<float*>(out.y), accumulate ? 1.0f : 0.0f, out.ldy);
    }
}

void TunedProducts::tune_out(const std::vector<CudaMatrix>& Ws, const __nv_bfloat16* x, int T, const Out& out,
                             bool accumulate) {
    if (!race_) return;  // every product takes cuBLAS's default (run: no choice for its shape)
    if (Ws.empty()) throw std::invalid_argument("tuned products: no matrix to time");
    const CudaMatrix& W = Ws.front();
    const int rows = static_cast<int>(W.rows), stride = static_cast<int>(W.stride);
    for (const CudaMatrix& other : Ws) {
        if (other.rows != W.rows || other.stride != W.stride || other.type != W.type) {
            throw std::invalid_argument("tuned products: the matrices timed together differ in shape or type");
        }
    }
    const Key key = key_of(W, T, accumulate, out);
    const int64_t ld = std::get<4>(key);
    if (choices_.count(key) || take_near(key, W, T, out)) return;
    const size_t n = hot_ ? 1 : Ws.size();
    // microseconds per product of one candidate, over the n matrices in turn (ten times over one)
    auto time_each = [&](const std::function<void(const CudaMatrix&)>& one) {
        const int reps = n == 1 ? 10 : 1;
        return graph_time_us(io_.stream, [&] {
            for (size_t i = 0; i < n; ++i) one(Ws[i]);
        }, reps) / static_cast<float>(n);
    };
    Choice c;
    c.timing.rows = rows;
    c.timing.cols = stride;
    c.timing.tokens = T;
    c.timing.accumulate = accumulate;
    c.timing.ldy = ld;
    c.timing.bf16_out = out.type == CUDA_R_16BF;
    c.timing.matrices = static_cast<int>(n);
    c.timing.names.push_back("cublas");
    c.timing.us.push_back(time_each([&](const CudaMatrix& M) { default_product(M, x, T, out, accumulate); }));
    describe_product(c, W, T, out, ld);
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
        c.timing.us.push_back(time_each([&](const CudaMatrix& M) { lt_product(c, offers[i].algo, M, x, out.y, accumulate); }));
        if (c.timing.us.back() < c.timing.us[c.timing.chosen]) {
            c.timing.chosen = static_cast<int>(c.timing.us.size()) - 1;
            c.algo = offers[i].algo;
            c.lt = true;
        }
    }
    choices_.emplace(key, c);
}

void TunedProducts::describe_product(Choice& c, const CudaMatrix& W, int T, const Out& out, int64_t ld) const {
    const int rows = static_cast<int>(W.rows), stride = static_cast<int>(W.stride);
    // W is row-major [rows][stride], i.e. column-major stride x rows, used transposed
    check(cublasLtMatmulDescCreate(&c.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul descriptor");
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t), "transpose A");
    check(cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n), "transpose B");
    check(cublasLtMatrixLayoutCreate(&c.a, CUDA_R_16BF, stride, rows, stride), "layout of W");
    check(cublasLtMatrixLayoutCreate(&c.b, CUDA_R_16BF, stride, T, stride), "layout of x");
    check(cublasLtMatrixLayoutCreate(&c.c, out.type, rows, T, ld), "layout of y");
}

bool TunedProducts::take_near(const Key& key, const CudaMatrix& W, int T, const Out& out) {
    const Choice* near = raced_near(key);
    if (!near) return false;
    Choice c;
    c.timing = near->timing;
    c.timing.tokens = T;
    c.timing.reused_from = near->timing.tokens;
    c.lt = near->lt;
    if (c.lt) {
        describe_product(c, W, T, out, std::get<4>(key));
        c.algo = near->algo;
        cublasLtMatmulHeuristicResult_t check_result{};
        if (cublasLtMatmulAlgoCheck(lt_, c.desc, c.a, c.b, c.c, c.c, &c.algo, &check_result) != CUBLAS_STATUS_SUCCESS ||
            check_result.workspaceSize > LoopStream::kWorkspace) {
            for (cublasLtMatrixLayout_t l : {c.a, c.b, c.c}) cublasLtMatrixLayoutDestroy(l);
            cublasLtMatmulDescDestroy(c.desc);
            return false;  // not valid at T: the caller races
        }
    }
    choices_.emplace(key, c);
    return true;
}

const TunedProducts::Choice* TunedProducts::raced_near(const Key& key) const {
    const Choice* best = nullptr;
    const int T = std::get<2>(key);
    for (const auto& [other, c] : choices_) {
        if (c.timing.reused_from) continue;  // only raced choices are passed on
        Key same = other;
        std::get<2>(same) = T;
        const int t = std::get<2>(other), gap = std::abs(t - T);
        if (same != key || 4 * gap > t) continue;
        if (!best || gap < std::abs(best->timing.tokens - T)) best = &c;
    }
    return best;
}

void TunedProducts::run_out(const CudaMatrix& W, const __nv_bfloat16* x, int T, const Out& out, bool accumulate) const {
    const auto it = choices_.find(key_of(W, T, accumulate, out));
    if (it == choices_.end() || !it->second.lt) {
        default_product(W, x, T, out, accumulate);
    } else {
        lt_product(it->second, it->second.algo, W, x, out.y, accumulate);
    }
}

std::vector<ProductTiming> TunedProducts::timings() const {
    std::vector<ProductTiming> out;
    for (const auto& [key, c] : choices_) out.push_back(c.timing);
    return out;
}

std::string TunedProducts::describe() const {
    if (!race_) return "cuBLAS default products";
    int lt = 0, reused = 0;
    for (const auto& [key, c] : choices_) {
        lt += c.lt ? 1 : 0;
        reused += c.timing.reused_from ? 1 : 0;
    }
    return std::to_string(choices_.size()) + " product shapes timed " + (hot_ ? "hot" : "cold") + ": " + std::to_string(lt) + " cuBLASLt, " +
           std::to_string(choices_.size() - lt) + " cuBLAS default" + (reused ? ", " + std::to_string(reused) + " reused" : "");
}

}  // namespace vla_edge
