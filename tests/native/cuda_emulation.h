// Stand-ins for the CUDA surface of our tensor-core kernels (native/cuda/mma_primitives.cuh and what the
// stream product uses besides), so that such a kernel compiles as host C++ and runs on the CPU. Why: the
// GPU machine is lent for ~30 minutes a session and has at times not come at all; a kernel's indexing
// (fragments, swizzles, splits, epilogues) can be checked here, in the default test suite, before any
// device time is spent on it.
//
// How: one std::thread per CUDA thread of a block, the blocks one after another; __syncthreads is a
// barrier of the block; the warp-wide operations (ldmatrix, mma.sync) meet in a per-warp buffer between
// two barriers of the warp, each lane then taking its share as the PTX ISA lays the fragments out
// ("Matrix fragments for mma.m16n8k16", "ldmatrix"). cp.async copies at once, so its waits hold
// trivially: the emulation checks arithmetic and indexing, not the timing of asynchronous copies, and
// its fragment layouts are this file's reading of the ISA, which the GPU tests check against the chip.
// Include before the kernel's headers; C++20 (std::barrier). Kernels run here: the stream product
// (tests/native/stream_product_emulated.cpp), the flash attention (flash_attention_emulated.cpp; measured
// on an H100, so that it checks this file's fragment layouts against the chip's) and the attention tile
// kernel with its merge (attention_tile_emulated.cpp).
#pragma once

#define VLA_EDGE_CUDA_EMULATION 1

#include <algorithm>
#include <barrier>
#include <cstdlib>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
#define __shared__ static  // one block runs at a time: a static is that block's

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local dim3 threadIdx, blockIdx, gridDim, blockDim;

// 16-bit floats as their bits, rounded to nearest even on the way in
struct __nv_bfloat16 {
    uint16_t bits = 0;
};
struct __half {
    uint16_t bits = 0;
};
inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t u = uint32_t{h.bits} << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (std::isnan(f)) return __nv_bfloat16{static_cast<uint16_t>((u >> 16) | 0x40)};
    u += 0x7fff + ((u >> 16) & 1);
    return __nv_bfloat16{static_cast<uint16_t>(u >> 16)};
}
inline float __half2float(__half h) {
    const int sign = h.bits >> 15, exp = (h.bits >> 10) & 0x1f, man = h.bits & 0x3ff;
    float v = exp == 0 ? std::ldexp(static_cast<float>(man), -24)
              : exp == 31 ? (man ? NAN : INFINITY)
                          : std::ldexp(static_cast<float>(man | 0x400), exp - 25);
    return sign ? -v : v;
}
inline __half __float2half(float f) {
    const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
    const float a = std::fabs(f);
    if (std::isnan(f)) return __half{static_cast<uint16_t>(sign | 0x7e00)};
    if (a >= 65520.0f) return __half{static_cast<uint16_t>(sign | 0x7c00)};  // rounds to infinity
    int e;
    std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
    const int exp = std::max(e - 1, -14);  // the binary16 exponent of a's scale (subnormals: -14)
    const float q = std::nearbyint(std::ldexp(a, 10 - exp));  // units of 2^(exp - 10), nearest even
    const int units = static_cast<int>(q);
    if (units == 0) return __half{sign};
    if (exp == -14 && units < 1024) return __half{static_cast<uint16_t>(sign | units)};  // subnormal
    int ex = exp + 15, man = units - 1024;
    if (units == 2048) ++ex, man = 0;  // rounded up to the next power of two
    return __half{static_cast<uint16_t>(sign | ex << 10 | man)};
}

struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
struct __half2 {
    __half x, y;
};
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16(a), __float2bfloat16(b)}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half(a), __float2half(b)}; }
struct float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
struct alignas(8) uint2 {
    unsigned x, y;
};
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
[[noreturn]] inline void __trap() { std::abort(); }

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float __ldcg(const float* p) { return *p; }
inline float2 __ldcg(const float2* p) { return *p; }
inline float4 __ldcg(const float4* p) { return *p; }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline void spin_pause() { std::this_thread::yield(); }

namespace vla_edge_emulation {

struct Warp {
    std::barrier<> sync{32};
    const void* rows[32] = {};        // ldmatrix: each lane's row address
    unsigned words[32][6] = {};       // mma: each lane's a[4], b0, b1
    float values[32] = {};            // shuffles
};
struct Block {
    std::barrier<> sync;
    std::vector<std::unique_ptr<Warp>> warps;
    std::vector<unsigned char> shared;
    Block(int threads, size_t shared_bytes) : sync(threads), shared(shared_bytes, 0xff) {  // 0xff: NaN if read unwritten
        for (int w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<Warp>());
    }
};
inline thread_local Block* block = nullptr;
inline Warp& warp() { return *block->warps[threadIdx.x / 32]; }

// Starts kernel() on one thread per CUDA thread of block `id` (its state in `b`) into `team`.
inline void start_block(std::vector<std::thread>& team, Block* b, dim3 id, dim3 grid, int threads,
                        const std::function<void()>& kernel) {
    for (int t = 0; t < threads; ++t) {
        team.emplace_back([=, &kernel] {
            threadIdx = dim3(t), blockIdx = id, gridDim = grid, blockDim = dim3(threads);
            block = b;
            kernel();
        });
    }
}

// The blocks of `grid` in grid order, or with `order_seed` in an order shuffled by it.
inline std::vector<dim3> block_ids(dim3 grid, unsigned order_seed = 0) {
    std::vector<dim3> ids;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) ids.push_back(dim3(x, y, z));
    if (order_seed) std::shuffle(ids.begin(), ids.end(), std::mt19937(order_seed));
    return ids;
}

// Runs kernel() for every thread of every block of `grid`, blocks one after another; `threads` a
// multiple of 32. The kernel must reach each __syncthreads with every thread of its block (as on the GPU).
// Blocks run in grid order, or with `order_seed` in an order shuffled by it: a GPU promises no order,
// so a kernel whose blocks meet (the last one of a tile adds the others' sums) must give the same
// bits either way.
inline void launch(dim3 grid, int threads, size_t shared_bytes, const std::function<void()>& kernel, unsigned order_seed = 0) {
    for (const dim3& id : block_ids(grid, order_seed)) {
        Block b(threads, shared_bytes);
        std::vector<std::thread> team;
        start_block(team, &b, id, grid, threads, kernel);
        for (std::thread& t : team) t.join();
    }
}

// A cooperative launch: every block of `grid` at once (all their threads started together), as
// cudaLaunchAttributeCooperative promises, so that a grid barrier (native/cuda/grid_barrier.cuh) meets.
inline void launch_cooperative(dim3 grid, int threads, size_t shared_bytes, const std::function<void()>& kernel) {
    std::vector<std::unique_ptr<Block>> blocks;
    std::vector<std::thread> team;
    for (const dim3& id : block_ids(grid)) {
        blocks.push_back(std::make_unique<Block>(threads, shared_bytes));
        start_block(team, blocks.back().get(), id, grid, threads, kernel);
    }
    for (std::thread& t : team) t.join();
}

inline uint16_t half_bits(const void* row, int i) {
    uint16_t v;
    std::memcpy(&v, static_cast<const unsigned char*>(row) + 2 * i, 2);
    return v;
}
inline float lo(unsigned w, bool bf16) {
    return bf16 ? __bfloat162float(__nv_bfloat16{static_cast<uint16_t>(w)}) : __half2float(__half{static_cast<uint16_t>(w)});
}
inline float hi(unsigned w, bool bf16) { return lo(w >> 16, bf16); }

// c += a b (m16n8k16, row.col): the warp's fragments gathered, each lane its four outputs.
inline void mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, bool bf16) {
    Warp& w = warp();
    const int lane = threadIdx.x % 32;
    std::memcpy(w.words[lane], a, sizeof a);
    w.words[lane][4] = b0, w.words[lane][5] = b1;
    w.sync.arrive_and_wait();
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; ++l) {
        const int g = l / 4, q = 2 * (l % 4);
        const unsigned* f = w.words[l];
        const int ar[4] = {g, g + 8, g, g + 8}, ak[4] = {q, q, q + 8, q + 8};
        for (int i = 0; i < 4; ++i) A[ar[i]][ak[i]] = lo(f[i], bf16), A[ar[i]][ak[i] + 1] = hi(f[i], bf16);
        B[q][g] = lo(f[4], bf16), B[q + 1][g] = hi(f[4], bf16);
        B[q + 8][g] = lo(f[5], bf16), B[q + 9][g] = hi(f[5], bf16);
    }
    w.sync.arrive_and_wait();  // every lane has read the buffer
    const int g = lane / 4, q = 2 * (lane % 4);
    const int cr[4] = {g, g, g + 8, g + 8}, cn[4] = {q, q + 1, q, q + 1};
    for (int i = 0; i < 4; ++i) {
        float s = c[i];
        for (int k = 0; k < 16; ++k) s += A[cr[i]][k] * B[k][cn[i]];
        c[i] = s;
    }
}

}  // namespace vla_edge_emulation

inline void __syncthreads() { vla_edge_emulation::block->sync.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { vla_edge_emulation::warp().sync.arrive_and_wait(); }
namespace vla_edge_emulation {
// v of lane `from(lane)`; every lane of the warp takes part (the kernels' full mask)
template <typename From>
inline float shuffle(float v, From from) {
    Warp& w = warp();
    const int lane = threadIdx.x % 32;
    w.values[lane] = v;
    w.sync.arrive_and_wait();
    const float got = w.values[from(lane) & 31];
    w.sync.arrive_and_wait();
    return got;
}
}  // namespace vla_edge_emulation
inline float __shfl_xor_sync(unsigned, float v, int m) {
    return vla_edge_emulation::shuffle(v, [m](int lane) { return lane ^ m; });
}
inline float __shfl_sync(unsigned, float v, int src) {
    return vla_edge_emulation::shuffle(v, [src](int) { return src; });
}

// WMMA with every lane holding the whole 16 x 16 tile (fragments are opaque to the kernels, which only
// load, multiply, fill and store them): loads read the tile in each lane, products run in each lane,
// stores are lane 0's, followed by a barrier of the warp.
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    float v[16][16] = {};  // [row][column] of the tile (A: m x k, B: k x n, accumulator: m x n)
};
inline float as_float(float x) { return x; }
inline float as_float(__half x) { return __half2float(x); }
template <typename Use, typename T, typename Layout, typename P>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const P* p, unsigned ldm) {
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 16; ++j)  // row-major: (i, j) at i ldm + j; column-major: at j ldm + i
            f.v[i][j] = as_float(std::is_same_v<Layout, col_major> ? p[j * ldm + i] : p[i * ldm + j]);
}
template <typename T, typename P>
inline void store_matrix_sync(P* p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm, layout_t layout) {
    if (threadIdx.x % 32 == 0)
        for (int i = 0; i < 16; ++i)
            for (int j = 0; j < 16; ++j) (layout == mem_col_major ? p[j * ldm + i] : p[i * ldm + j]) = f.v[i][j];
    __syncwarp();
}
template <typename Use, typename T, typename Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float x) {
    for (auto& row : f.v)
        for (float& e : row) e = x;
}
template <typename TA, typename LA, typename TB, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, 16, 16, 16, TC>& d, const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, TB, LB>& b, const fragment<accumulator, 16, 16, 16, TC>& c) {
    fragment<accumulator, 16, 16, 16, TC> r;
    for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 16; ++j) {
            float s = c.v[i][j];
            for (int k = 0; k < 16; ++k) s += a.v[i][k] * b.v[k][j];
            r.v[i][j] = s;
        }
    d = r;
}
}  // namespace wmma
}  // namespace nvcuda

namespace vla_edge {

inline void pdl_launch_dependents() {}
inline void pdl_wait() {}
inline void pdl_prologue() {}
inline unsigned char* dynamic_shared() { return vla_edge_emulation::block->shared.data(); }
inline void cp_async16(void* dst, const void* src) { std::memcpy(dst, src, 16); }
inline void cp_async16_or_zero(void* dst, const void* src, bool valid) {
    if (valid) {
        std::memcpy(dst, src, 16);
    } else {
        std::memset(dst, 0, 16);
    }
}
inline void cp_async_commit() {}
template <int Pending>
inline void cp_async_wait() {}

// Matrix i's eight row addresses come from lanes 8i .. 8i + 7; lane l gets row l / 4, elements
// 2 (l % 4) and 2 (l % 4) + 1 (Trans: the transposed matrix's).
template <bool Trans = false>
inline void ldmatrix_x4(unsigned (&r)[4], const void* p) {
    using namespace vla_edge_emulation;
    Warp& w = warp();
    const int lane = threadIdx.x % 32, g = lane / 4, q = 2 * (lane % 4);
    w.rows[lane] = p;
    w.sync.arrive_and_wait();
    for (int i = 0; i < 4; ++i) {
        const uint16_t a = Trans ? half_bits(w.rows[8 * i + q], g) : half_bits(w.rows[8 * i + g], q);
        const uint16_t b = Trans ? half_bits(w.rows[8 * i + q + 1], g) : half_bits(w.rows[8 * i + g], q + 1);
        r[i] = unsigned{a} | unsigned{b} << 16;
    }
    w.sync.arrive_and_wait();
}
inline void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    vla_edge_emulation::mma(c, a, b0, b1, true);
}
inline void mma_f16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    vla_edge_emulation::mma(c, a, b0, b1, false);
}

}  // namespace vla_edge
