// The stream product's kernel (native/cuda/stream_product.cuh) run on the CPU through
// tests/native/cuda_emulation.h, against a float64 reference on fresh random inputs: the plain form
// (rows past a tile, input values split 1 to 4 ways, two token blocks, accumulating into rows ldy
// apart, pipelines that wrap around their six stages) and the paired forms (GeGLU; RoPE with the K/V
// cache writes), each with four warps per block and with eight; and a split product whose blocks run in
// a shuffled order, which must give the same bits. Prints one line per case and exits 1 if any misses its bound. Also checks that
// every tile's counter is back at zero after a split launch (the next launch or graph replay needs it).
//   usage: stream_product_emulated SEED
#include "cuda_emulation.h"
//
#include "emulated_cases.h"
#include "stream_product.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

using namespace vla_edge;
using namespace vla_edge::stream_product;
using vla_edge_emulation::rel_l2;

namespace {

std::mt19937 rng;

std::vector<bf16> random_bf16(size_t n, float amp) {
    std::uniform_real_distribution<float> u(-amp, amp);
    std::vector<bf16> v(n);
    for (bf16& x : v) x = __float2bfloat16(u(rng));
    return v;
}

struct Case {
    std::string name;
    int rows, K, T, splits;
};

// ", 8 warps" where the kernel ran with eight warps of 8 weight rows (else four of 16)
std::string warps_name(int warps) { return warps == 8 ? ", 8 warps" : ""; }

// W x in float64 from the BF16 values both sides read: ref[t][n]
std::vector<double> reference(const std::vector<bf16>& W, const std::vector<bf16>& x, int rows, int K, int T) {
    std::vector<double> ref(size_t(T) * rows);
    for (int t = 0; t < T; ++t)
        for (int n = 0; n < rows; ++n) {
            double s = 0;
            for (int k = 0; k < K; ++k) s += double(__bfloat162float(W[size_t(n) * K + k])) * __bfloat162float(x[size_t(t) * K + k]);
            ref[size_t(t) * rows + n] = s;
        }
    return ref;
}

// The kernel's launch over the plan for `splits` (partial sums and counters made here), and the float64
// product it is checked against.
struct Ran {
    StreamPlan plan;
    std::vector<unsigned> counters;  // every one zero again after the launch
    std::vector<double> ref;         // W x: ref[t][n]
};
template <Epilogue E>
Ran run(const std::vector<bf16>& W, int rows, const std::vector<bf16>& x, int T, int K, int splits, int warps, float* y,
        int64_t ldy, float beta, const Paired& po, unsigned order_seed = 0) {
    Ran r{stream_plan(rows, K, T, splits, warps), {}, reference(W, x, rows, K, T)};
    std::vector<float> part(std::max<int64_t>(1, stream_part_floats(r.plan, rows, T)));
    r.counters.assign(stream_counters(r.plan), 0);
    vla_edge_emulation::launch(dim3(r.plan.tiles, r.plan.splits, r.plan.token_blocks), 32 * r.plan.warps, kSmemBytes, [&] {
        if (r.plan.warps == 8) {
            stream_product_kernel<E, 8>(W.data(), rows, x.data(), T, K, r.plan.per, y, ldy, beta, po, part.data(), r.counters.data());
        } else {
            stream_product_kernel<E, 4>(W.data(), rows, x.data(), T, K, r.plan.per, y, ldy, beta, po, part.data(), r.counters.data());
        }
    }, order_seed);
    return r;
}

bool report(const std::string& name, double err, double bound, const std::vector<unsigned>& counters) {
    bool zero = true;
    for (unsigned c : counters) zero = zero && c == 0;
    const bool ok = err <= bound && zero;  // NaN fails
    std::printf("%-44s rel-L2 %.3g (bound %.0e)%s %s\n", name.c_str(), err, bound, zero ? "" : " COUNTERS NOT RESET",
                ok ? "ok" : "FAILED");
    return ok;
}

// Float32 sums of the same BF16 products, in another order: ~1e-7 from float64
constexpr double kPlain = 1e-5;

bool plain_case(const Case& c, bool accumulate, int warps) {
    const auto W = random_bf16(size_t(c.rows) * c.K, 0.05f), x = random_bf16(size_t(c.T) * c.K, 1.0f);
    const int64_t ldy = c.rows + (accumulate ? 5 : 0);
    std::vector<float> y(size_t(c.T) * ldy);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& v : y) v = u(rng);
    const std::vector<float> y0 = y;
    const Ran r = run<Epilogue::plain>(W, c.rows, x, c.T, c.K, c.splits, warps, y.data(), ldy, accumulate ? 1.0f : 0.0f,
                                       Paired{});
    const StreamPlan& p = r.plan;
    std::vector<double> got, want;
    bool padding_kept = true;
    for (int t = 0; t < c.T; ++t) {
        for (int n = 0; n < ldy; ++n) {
            const size_t i = size_t(t) * ldy + n;
            if (n >= c.rows) {
                padding_kept = padding_kept && y[i] == y0[i];  // between rows: never written
                continue;
            }
            got.push_back(y[i]);
            want.push_back(r.ref[size_t(t) * c.rows + n] + (accumulate ? y0[i] : 0.0));
        }
    }
    const std::string name =
        c.name + " (" + std::to_string(p.splits) + " splits of " + std::to_string(p.per) + warps_name(warps) + ")";
    if (!padding_kept) std::printf("%s: wrote between rows\n", name.c_str());
    return report(name, rel_l2(got, want), kPlain, r.counters) && padding_kept;
}

// The split sums meet in whichever block of a tile comes last: the same bits whatever the blocks' order
bool order_case(int warps) {
    const int rows = 130, K = 512, T = 70, splits = 4;
    const auto W = random_bf16(size_t(rows) * K, 0.05f), x = random_bf16(size_t(T) * K, 1.0f);
    std::vector<float> y0(size_t(T) * rows, 0.5f), y1 = y0;
    const Ran a = run<Epilogue::plain>(W, rows, x, T, K, splits, warps, y0.data(), rows, 1.0f, Paired{});
    const Ran b = run<Epilogue::plain>(W, rows, x, T, K, splits, warps, y1.data(), rows, 1.0f, Paired{}, 1 + rng() % 1000);
    const bool same = std::memcmp(y0.data(), y1.data(), y0.size() * sizeof(float)) == 0;
    std::vector<double> got(y1.begin(), y1.end()), want(a.ref);
    for (double& v : want) v += 0.5;
    std::printf("plain %d x %d, %d tokens, blocks shuffled (%d splits%s): %s\n", rows, K, T, a.plan.splits,
                warps_name(warps).c_str(), same ? "same bits" : "BITS DIFFER");
    return report("  ... and from float64", rel_l2(got, want), kPlain, b.counters) && same;
}

bool geglu_case(int F, int K, int T, int splits, int warps) {
    const int rows = 2 * F;
    const auto W = random_bf16(size_t(rows) * K, 0.08f), x = random_bf16(size_t(T) * K, 1.0f);
    const int64_t ld = F + 8;
    std::vector<bf16> g(size_t(T) * ld, __float2bfloat16(7.0f));
    Paired po;
    po.kind = PairedKind::geglu, po.g = g.data(), po.ld = ld;
    const Ran r = run<Epilogue::geglu>(W, rows, x, T, K, splits, warps, nullptr, 0, 0.0f, po);
    const std::vector<double>& ref = r.ref;
    std::vector<double> got, want;
    bool padding_kept = true;
    for (int t = 0; t < T; ++t) {
        for (int j = 0; j < ld; ++j) {
            const double v = __bfloat162float(g[size_t(t) * ld + j]);
            if (j >= F) {
                padding_kept = padding_kept && v == 7.0;
                continue;
            }
            const double a = ref[size_t(t) * rows + j], b = ref[size_t(t) * rows + F + j];
            got.push_back(v);
            want.push_back(0.5 * a * (1.0 + std::tanh(0.7978845608028654 * a * (1.0 + 0.044715 * a * a))) * b);
        }
    }
    // BF16 output: 2^-9 relative rounding
    return report("geglu F " + std::to_string(F) + " K " + std::to_string(K) + " T " + std::to_string(T) + " (" +
                      std::to_string(r.plan.splits) + " splits" + warps_name(warps) + ")",
                  rel_l2(got, want), 4e-3, r.counters) &&
           padding_kept;
}

bool rope_case(int heads, int d, int K, int T, int splits, int warps) {
    const int rows = (heads + 2) * d, half = d / 2;
    const auto W = random_bf16(size_t(rows) * K, 0.05f), x = random_bf16(size_t(T) * K, 1.0f);
    std::vector<int> pos(T), cache_rows(T);
    for (int t = 0; t < T; ++t) pos[t] = static_cast<int>(rng() % 1000), cache_rows[t] = 3 + 2 * t;  // rows apart
    const int cache = 3 + 2 * T;
    std::vector<__half> q16(size_t(T) * heads * d), kc(size_t(cache) * d, __float2half(7.0f)), vc(kc);
    Paired po;
    po.kind = PairedKind::rope, po.pos = pos.data(), po.cache_rows = cache_rows.data();
    po.theta_scale = std::pow(10000.0f, -2.0f / static_cast<float>(d)), po.heads = heads, po.d = d;
    po.q16 = q16.data(), po.kc = kc.data(), po.vc = vc.data();
    const Ran r = run<Epilogue::rope>(W, rows, x, T, K, splits, warps, nullptr, 0, 0.0f, po);
    const std::vector<double>& ref = r.ref;
    std::vector<double> got, want;
    bool others_kept = true;  // cache rows no token owns stay as they were
    for (int r = 0; r < cache; ++r) {
        if (r >= 3 && (r - 3) % 2 == 0 && (r - 3) / 2 < T) continue;
        for (int j = 0; j < d; ++j) others_kept = others_kept && __half2float(kc[size_t(r) * d + j]) == 7.0f;
    }
    for (int t = 0; t < T; ++t) {
        for (int h = 0; h < heads + 2; ++h) {
            for (int j = 0; j < half; ++j) {
                const double x0 = ref[size_t(t) * rows + h * d + j], x1 = ref[size_t(t) * rows + h * d + j + half];
                const int64_t row = cache_rows[t];
                if (h == heads + 1) {
                    got.push_back(__half2float(vc[row * d + j])), want.push_back(x0);
                    got.push_back(__half2float(vc[row * d + j + half])), want.push_back(x1);
                    continue;
                }
                const double theta = pos[t] * std::pow(double(po.theta_scale), j), c = std::cos(theta), s = std::sin(theta);
                const __half* dst = h < heads ? q16.data() + (size_t(t) * heads + h) * d : kc.data() + row * d;
                got.push_back(__half2float(dst[j])), want.push_back(x0 * c - x1 * s);
                got.push_back(__half2float(dst[j + half])), want.push_back(x0 * s + x1 * c);
            }
        }
    }
    // F16 output (2^-11 relative) and float32 angles up to ~1000 radians (~3e-5 absolute)
    return report("rope heads " + std::to_string(heads) + " d " + std::to_string(d) + " K " + std::to_string(K) + " T " +
                      std::to_string(T) + " (" + std::to_string(r.plan.splits) + " splits" + warps_name(warps) + ")",
                  rel_l2(got, want), 2e-3, r.counters) &&
           others_kept;
}

}  // namespace

int main(int argc, char** argv) {
    rng.seed(argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : std::random_device{}());
    bool ok = true;
    // rows past the last full tile; input values split 1 / 2 / 3 ways; two token blocks; eight stages in one
    // split (the six-stage ring wraps)
    for (int warps : {4, 8}) {
        ok &= plain_case({"plain 130 x 128, 50 tokens", 130, 128, 50, 1}, false, warps);
        ok &= plain_case({"plain 384 x 256, 50 tokens, accumulate", 384, 256, 50, 2}, true, warps);
        ok &= plain_case({"plain 128 x 384, 20 tokens", 128, 384, 20, 3}, false, warps);
        ok &= plain_case({"plain 64 x 512, 100 tokens", 64, 512, 100, 1}, false, warps);
        ok &= plain_case({"plain 64 x 512, 70 tokens, accumulate", 64, 512, 70, 4}, true, warps);
        ok &= geglu_case(64, 128, 50, 1, warps);
        ok &= geglu_case(96, 256, 30, 2, warps);
        ok &= rope_case(2, 64, 128, 50, 1, warps);
        ok &= rope_case(1, 128, 256, 20, 2, warps);
        ok &= order_case(warps);
    }
    std::printf(ok ? "all cases within their bounds\n" : "SOME CASES FAILED\n");
    return ok ? 0 : 1;
}
