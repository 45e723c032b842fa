// Layer products y (+)= W x with a cuBLAS algorithm chosen per shape by timing, not by heuristic.
// For the expert's 50-150 token inputs cuBLAS's default picks kernels sized for larger products
// (one of them split-K with a reduce kernel of its own): ~29 us per layer and step on an H100 where
// the weights alone stream in ~10 us (docs/gpu.md, "Our own expert loop"). Each shape is timed once,
// before any graph capture, over cuBLAS's default and every algorithm cuBLASLt's heuristic offers,
// on the real weights; the fastest is kept. Cold (the loops' default since the H100 run of
// 2026-12-07, fifth session) times them as the chunk runs them: one product after another over every
// layer's matrix of that shape, so that each finds its weights outside the L2 cache. Hot
// (VLA_EDGE_CUDA_TUNE_COLD=0, the first form) times one matrix ten times over, its weights in L2 from
// the second call on, a case the chunk never has. Included by CUDA sources only.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "loop_common.cuh"
#include "stream_product_plan.h"

namespace vla_edge {

// One shape's race: candidate 0 is cuBLAS's default (cublasGemmEx), then cuBLASLt's offers.
struct ProductTiming {
    int rows = 0, cols = 0, tokens = 0;
    int64_t ldy = 0;                // values between y's rows (rows: packed)
    bool bf16_out = false;          // y in BF16 (else float32)
    bool accumulate = false;        // beta = 1
    std::vector<std::string> names;  // per candidate: "cublas", "lt<i>" (cuBLASLt's i-th offer), "stream<s>"
                                     // (our stream product in s splits, stream_product.cuh)
    std::vector<float> us;          // per candidate
    int chosen = 0;
    int matrices = 1;  // how many matrices of the shape each timing went over (one: L2-hot)
    int reused_from = 0;  // tokens of the raced shape whose choice this one took (0: raced itself)
    std::string rejected;  // stream candidates left out of the race: which, and their rel-L2 from cuBLAS
    float handicap_us = 0;  // added to every other candidate's time when the winner was picked (tune's)
};

class TunedProducts {
  public:
    // The products run on `io`'s stream, cuBLAS handle and workspace; `io` must outlive this.
    // cold: tune() times over all of its matrices (the loops, unless VLA_EDGE_CUDA_TUNE_COLD=0), else over the first.
    // race false: tune() races nothing, so every product takes cuBLAS's default (a loop's switch off).
    // The stream product (stream_product.cuh) joins each race where it takes the shape with
    // VLA_EDGE_CUDA_STREAM_PRODUCTS=1 (opt-in until it has run on a GPU); =only races it alone (the GPU
    // tests' way of running it everywhere).
    TunedProducts(const LoopStream& io, bool cold, bool race = true);
    ~TunedProducts();
    TunedProducts(const TunedProducts&) = delete;
    TunedProducts& operator=(const TunedProducts&) = delete;

    // Races the candidates for the shape of `Ws` (matrices of one shape, e.g. every layer's q/k/v) at
    // T tokens unless that shape has run before, or a shape differing only in its tokens, by at most a
    // quarter, was raced: then its choice is taken where cuBLASLt accepts it at T (the prefix's products
    // at each new prompt length, a few tokens apart, race once, not each time: ~0.1-0.3 s each). Each
    // candidate of a race runs over all of `Ws` in turn, so
    // with more weight bytes than the L2 cache holds every product reads its weights from memory as
    // in the chunk (cold; hot: the first matrix alone, ten times over, its weights in L2). Reads the
    // matrices and x, overwrites y; the stream must not be capturing. ldy: as in run().
    // handicap_us: what every candidate but the stream product needs after it that the stream
    // product's paired form does not (the RoPE or GeGLU kernel's time, where the loop will run the
    // paired form: run_paired); it is added to their times when the winner is picked.
    void tune(const std::vector<CudaMatrix>& Ws, const __nv_bfloat16* x, int T, float* y, bool accumulate,
              int64_t ldy = 0, float handicap_us = 0) {
        tune_out(Ws, x, T, Out{y, CUDA_R_32F, ldy}, accumulate, handicap_us);
    }
    // The same for a product written in BF16 (packed, never accumulating; the prefix's gate/up).
    void tune(const std::vector<CudaMatrix>& Ws, const __nv_bfloat16* x, int T, __nv_bfloat16* y) {
        tune_out(Ws, x, T, Out{y, CUDA_R_16BF, 0}, false);
    }
    // y (+)= W x for T tokens: BF16 W [rows][stride] and x [T][stride], F32 y [T][ldy] (ldy 0: rows,
    // packed; wider where several products fill one row); enqueued on the stream (capturable). Uses
    // cuBLAS's default for a shape that was never tuned.
    void run(const CudaMatrix& W, const __nv_bfloat16* x, int T, float* y, bool accumulate, int64_t ldy = 0) const {
        run_out(W, x, T, Out{y, CUDA_R_32F, ldy}, accumulate);
    }
    // y = W x rounded to BF16 (float32 accumulation), packed.
    void run(const CudaMatrix& W, const __nv_bfloat16* x, int T, __nv_bfloat16* y) const {
        run_out(W, x, T, Out{y, CUDA_R_16BF, 0}, false);
    }
    // W x's rows as `paired` names them (GeGLU's gelu_tanh(gate) * up from the fused [gate | up]
    // matrix; RoPE of q and k, and the K/V cache rows, from the fused q/k/v matrix), straight from the
    // stream product's paired form where the race of W's plain product at T chose the stream product
    // and the form takes W; false, and nothing enqueued, otherwise (then: run() and the kernel after it).
    bool run_paired(const CudaMatrix& W, const __nv_bfloat16* x, int T, const stream_product::Paired& paired) const;
    std::vector<ProductTiming> timings() const;
    // e.g. "4 product shapes timed cold: 3 cuBLASLt, 1 cuBLAS default" (", 2 stream" where our stream
    // product won, ", 2 reused" where shapes took a nearby race's choice, ", 1 rejected" where a stream
    // candidate differed from cuBLAS); "cuBLAS default products" without a race
    std::string describe() const;
    bool races() const { return race_; }
    // Whether races offer the stream product (VLA_EDGE_CUDA_STREAM_PRODUCTS=1 or only).
    bool offers_stream() const { return race_ && streams_; }

  private:
    using Key = std::tuple<int, int, int, bool, int64_t, int>;  // rows, stride, T, accumulate, ldy (never 0), y's type
    struct Out {  // a product's output: where, in which type, rows how far apart (0: packed)
        void* y;
        cudaDataType_t type;
        int64_t ldy;
    };
    struct Choice {
        cublasLtMatmulDesc_t desc = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
        cublasLtMatmulAlgo_t algo{};
        bool lt = false;  // false: cuBLAS's default won (or the stream product)
        stream_product::StreamPlan stream;  // where the stream product won, its plan (per 0: it did not)
        ProductTiming timing;
    };
    void tune_out(const std::vector<CudaMatrix>& Ws, const __nv_bfloat16* x, int T, const Out& out, bool accumulate,
                  float handicap_us = 0);
    // The raced choice nearest to `key` in tokens, within a quarter of them, or null.
    const Choice* raced_near(const Key& key) const;
    // Stores that choice for `key` (W's shape at T tokens) where cuBLASLt accepts its algorithm at T;
    // false where there is none or it is not valid (then the shape is raced).
    bool take_near(const Key& key, const CudaMatrix& W, int T, const Out& out);
    // c's descriptor and layouts for W's shape at T tokens (the algorithm is chosen apart).
    void describe_product(Choice& c, const CudaMatrix& W, int T, const Out& out, int64_t ld) const;
    void run_out(const CudaMatrix& W, const __nv_bfloat16* x, int T, const Out& out, bool accumulate) const;
    // cuBLAS's default algorithm (LoopStream's product), the race's first candidate
    void default_product(const CudaMatrix& W, const __nv_bfloat16* x, int T, const Out& out, bool accumulate) const;
    void lt_product(const Choice& c, const cublasLtMatmulAlgo_t& algo, const CudaMatrix& W, const __nv_bfloat16* x,
                    void* y, bool accumulate) const;
    // Whether the stream product takes W's shape at T with `plan` (its partial sums fit the buffer).
    bool stream_takes(const CudaMatrix& W, const __nv_bfloat16* x, int T, const Out& out,
                      const stream_product::StreamPlan& plan) const;
    void run_stream(const stream_product::StreamPlan& plan, const CudaMatrix& W, const __nv_bfloat16* x, int T,
                    const Out& out, bool accumulate) const;
    // The stream candidates' race entries for W's shape: each split count checked against cuBLAS's
    // default on the real weights first (rel-L2 <= 1e-3, else rejected and named in c.timing.rejected).
    void race_stream(Choice& c, const std::vector<CudaMatrix>& Ws, const __nv_bfloat16* x, int T, const Out& out,
                     bool accumulate, const std::function<float(const std::function<void(const CudaMatrix&)>&)>& time_each);
    static Key key_of(const CudaMatrix& W, int T, bool accumulate, const Out& out) {
        return Key{static_cast<int>(W.rows), static_cast<int>(W.stride), T, accumulate, out.ldy ? out.ldy : W.rows,
                   static_cast<int>(out.type)};
    }

    const LoopStream& io_;
    cublasLtHandle_t lt_ = nullptr;
    bool hot_ = true;
    bool race_ = true;
    int streams_ = 0;  // the stream product: 0 left out, 1 raced beside cuBLAS, 2 raced alone
    int sms_ = 0;
    // its partial sums and per-tile counters, made at the first race that offers it and kept (captured
    // graphs hold their addresses); sized for the expert's products at up to kMaxTokens tokens
    static constexpr int64_t kPartFloats = int64_t{1} << 22;
    static constexpr int kCounters = 4096;
    float* part_ = nullptr;
    unsigned* counters_ = nullptr;
    std::map<Key, Choice> choices_;
};

}  // namespace vla_edge
