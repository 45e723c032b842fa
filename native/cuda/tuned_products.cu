#include "tuned_products.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <functional>
#include <stdexcept>

#include "graph_timer.cuh"
#include "stream_product.cuh"

namespace vla_edge {

namespace {

void check(cublasStatus_t s, const char* what) { loop_check(s, "tuned products", what); }

constexpr int kOffers = 16;  // cuBLASLt heuristic results raced per shape
constexpr double kStreamBound = 1e-3;  // rel-L2 of a stream candidate from cuBLAS's default (both float32 sums
                                       // of the same BF16 products: they differ in order only, ~1e-6)

// VLA_EDGE_CUDA_STREAM_PRODUCTS: 1 races the stream product beside cuBLAS, only races it alone, else
// (the default until it has run on a GPU) it stays out
int stream_mode() {
    const char* v = std::getenv("VLA_EDGE_CUDA_STREAM_PRODUCTS");
    if (v && !std::strcmp(v, "1")) return 1;
    if (v && !std::strcmp(v, "only")) return 2;
    return 0;
}

}  // namespace

TunedProducts::TunedProducts(const LoopStream& io, bool cold, bool race)
    : io_(io), hot_(!cold), race_(race), streams_(stream_mode()) {
    if (!race_) return;
    check(cublasLtCreate(&lt_), "creating a cuBLASLt handle");
    int device = 0;
    loop_check(cudaGetDevice(&device), "tuned products", "current device");
    loop_check(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device), "tuned products", "device attributes");
}

TunedProducts::~TunedProducts() {
    for (auto& [key, c] : choices_) {
        if (c.a) cublasLtMatrixLayoutDestroy(c.a);
        if (c.b) cublasLtMatrixLayoutDestroy(c.b);
        if (c.c) cublasLtMatrixLayoutDestroy(c.c);
        if (c.desc) cublasLtMatmulDescDestroy(c.desc);
    }
    if (lt_) cublasLtDestroy(lt_);
    cudaFree(part_);
    cudaFree(counters_);
}

bool TunedProducts::stream_takes(const CudaMatrix& W, const __nv_bfloat16* x, int T, const Out& out,
                                 const stream_product::StreamPlan& plan) const {
    return streams_ && out.type == CUDA_R_32F && stream_product::stream_product_fits(W, x, T) &&
           stream_product::stream_part_floats(plan, static_cast<int>(W.rows), T) <= kPartFloats &&
           stream_product::stream_counters(plan) <= kCounters;
}

void TunedProducts::run_stream(const stream_product::StreamPlan& plan, const CudaMatrix& W, const __nv_bfloat16* x,
                               int T, const Out& out, bool accumulate) const {
    stream_product::launch_stream_product(plan, W, x, T, static_cast<float*>(out.y), out.ldy ? out.ldy : W.rows,
                                          accumulate ? 1.0f : 0.0f, nullptr, part_, counters_, io_.stream);
    loop_check(cudaGetLastError(), "tuned products", "stream product launch");
}

bool TunedProducts::run_paired(const CudaMatrix& W, const __nv_bfloat16* x, int T, const stream_product::Paired& paired) const {
    const auto it = choices_.find(key_of(W, T, false, Out{nullptr, CUDA_R_32F, 0}));
    if (it == choices_.end() || !it->second.stream.per || !stream_product::paired_fits(W, paired) ||
        reinterpret_cast<uintptr_t>(x) % 16 != 0) {
        return false;
    }
    stream_product::launch_stream_product(it->second.stream, W, x, T, nullptr, 0, 0.0f, &paired, part_, counters_, io_.stream);
    loop_check(cudaGetLastError(), "tuned products", "stream product (paired) launch");
    return true;
}

void TunedProducts::race_stream(Choice& c, const std::vector<CudaMatrix>& Ws, const __nv_bfloat16* x, int T,
                                const Out& out, bool accumulate,
                                const std::function<float(const std::function<void(const CudaMatrix&)>&)>& time_each) {
    const CudaMatrix& W = Ws.front();
    const int rows = static_cast<int>(W.rows);
    // split counts: none, a few, and the one that gives every SM one block; each with four and eight warps
    const stream_product::StreamPlan whole = stream_product::stream_plan(rows, static_cast<int>(W.stride), T, 1);
    const int fill = std::max(1, sms_ / std::max(1, whole.tiles * whole.token_blocks));
    std::vector<int> asked = {1, 2, 4, 8, fill};
    std::sort(asked.begin(), asked.end());
    asked.erase(std::unique(asked.begin(), asked.end()), asked.end());
    std::vector<stream_product::StreamPlan> plans;
    for (int s : asked) {
        for (int warps : {4, 8}) {  // four warps of 16 weight rows, or eight of 8
            const stream_product::StreamPlan p = stream_product::stream_plan(rows, static_cast<int>(W.stride), T, s, warps);
            const bool seen = std::any_of(plans.begin(), plans.end(),
                                          [&](const auto& q) { return q.splits == p.splits && q.warps == p.warps; });
            if (!seen && stream_takes(W, x, T, out, p)) plans.push_back(p);
        }
    }
    // "stream<splits>", "stream<splits>w8": a candidate's name in the race
    auto name = [](const stream_product::StreamPlan& p) {
        return "stream" + std::to_string(p.splits) + (p.warps == 8 ? "w8" : "");
    };
    if (plans.empty()) return;
    const char* who = "tuned products";
    if (!part_) {
        loop_check(cudaMalloc(&part_, kPartFloats * sizeof(float)), who, "allocating the stream product's partial sums");
        loop_check(cudaMalloc(&counters_, kCounters * sizeof(unsigned)), who, "allocating the stream product's counters");
        loop_check(cudaMemset(counters_, 0, kCounters * sizeof(unsigned)), who, "clearing the stream product's counters");
        loop_check(stream_product::allow_stream_product(), who, "stream product shared memory");
    }
    // each plan against cuBLAS's default on the first matrix, packed and not accumulating
    const size_t values = static_cast<size_t>(T) * rows;
    auto scratch = [&] {
        float* p = nullptr;
        loop_check(cudaMalloc(&p, values * sizeof(float)), who, "allocating the check's outputs");
        return std::unique_ptr<float, cudaError_t (*)(void*)>(p, cudaFree);
    };
    const auto ref = scratch(), mine = scratch();
    std::vector<float> a(values), b(values);
    default_product(W, x, T, Out{ref.get(), CUDA_R_32F, 0}, false);
    loop_check(cudaMemcpyAsync(a.data(), ref.get(), values * sizeof(float), cudaMemcpyDeviceToHost, io_.stream), who, "check");
    std::vector<stream_product::StreamPlan> good;
    for (const auto& p : plans) {
        run_stream(p, W, x, T, Out{mine.get(), CUDA_R_32F, 0}, false);
        loop_check(cudaMemcpyAsync(b.data(), mine.get(), values * sizeof(float), cudaMemcpyDeviceToHost, io_.stream), who,
                   "check");
        loop_check(cudaStreamSynchronize(io_.stream), who, "the stream product's check");
        double diff = 0, norm = 0;
        for (size_t i = 0; i < values; ++i) {
            diff += (double{b[i]} - a[i]) * (double{b[i]} - a[i]);
            norm += double{a[i]} * a[i];
        }
        const double rel = std::sqrt(diff / std::max(norm, 1e-300));
        if (rel <= kStreamBound) {  // NaN fails too
            good.push_back(p);
        } else {
            char why[64];
            std::snprintf(why, sizeof why, ": rel-L2 %.3g from cuBLAS", rel);
            c.timing.rejected += (c.timing.rejected.empty() ? "" : "; ") + name(p) + why;
        }
    }
    for (const auto& p : good) {
        c.timing.names.push_back(name(p));
        c.timing.us.push_back(time_each([&](const CudaMatrix& M) { run_stream(p, M, x, T, out, accumulate); }));
        const bool alone_first = streams_ == 2 && c.stream.per == 0;  // only: the first stream entry wins outright
        // the time to beat: the chosen stream candidate's, or the chosen other one's with the handicap
        const float best = c.timing.us[c.timing.chosen] + (c.stream.per ? 0.0f : c.timing.handicap_us);
        if (alone_first || c.timing.us.back() < best) {
            c.timing.chosen = static_cast<int>(c.timing.us.size()) - 1;
            c.stream = p;
            c.lt = false;
        }
    }
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
                             bool accumulate, float handicap_us) {
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
    c.timing.handicap_us = handicap_us;
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
    race_stream(c, Ws, x, T, out, accumulate, time_each);
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
    if (near->stream.per) {  // the stream product at T tokens, as many splits as it raced with
        c.stream = stream_product::stream_plan(static_cast<int>(W.rows), static_cast<int>(W.stride), T, near->stream.splits,
                                               near->stream.warps);
        if (!stream_takes(W, nullptr, T, out, c.stream)) return false;
    }
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
    if (it != choices_.end() && it->second.stream.per && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
        run_stream(it->second.stream, W, x, T, out, accumulate);
    } else if (it == choices_.end() || !it->second.lt) {
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
    int lt = 0, streamed = 0, reused = 0, rejected = 0;
    for (const auto& [key, c] : choices_) {
        lt += c.lt ? 1 : 0;
        streamed += c.stream.per ? 1 : 0;
        reused += c.timing.reused_from ? 1 : 0;
        rejected += c.timing.rejected.empty() || c.timing.reused_from ? 0 : 1;
    }
    auto count = [](int n, const char* what) { return n ? ", " + std::to_string(n) + " " + what : std::string(); };
    return std::to_string(choices_.size()) + " product shapes timed " + (hot_ ? "hot" : "cold") + ": " + std::to_string(lt) +
           " cuBLASLt, " + std::to_string(choices_.size() - lt - streamed) + " cuBLAS default" + count(streamed, "stream") +
           count(reused, "reused") + count(rejected, "rejected");
}

}  // namespace vla_edge
