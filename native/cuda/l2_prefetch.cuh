// The next layer product's weights pulled into L2 while the current one runs (opt-in,
// VLA_EDGE_CUDA_L2_PREFETCH=1; Hopper and newer). Why: the expert's four products take ~29 us per
// layer and step inside the loop, where the weights of all 18 layers (~600 MB) pass through the
// 50 MB L2, against ~22 us for the same products timed alone with their weights already in L2 (H100
// profile and kernel bench of 2026-12-07), while the weights alone stream in ~10 us: the products
// wait on memory latency, not bandwidth. A bulk prefetch (`cp.async.bulk.prefetch.L2`, one
// instruction per 128 KB, served by the copy engine of the SM) is issued on a side branch of the
// captured graph as each product starts, for the product after it, so the main chain never waits
// for it. A hint only: the arithmetic and the results do not change. Only templates and inline
// functions, so that several translation units may include it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace vla_edge {
namespace l2_prefetch {

constexpr uint32_t kSlice = 128u << 10;  // bytes per prefetch instruction (a multiple of 16)

// Each thread asks for one slice of [p, p + bytes); p 16-byte aligned. `static`: this header is
// included by several translation units (expert_kernels.cuh says why).
static __global__ void l2_prefetch_kernel(const char* p, int64_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int64_t first = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) * kSlice;
    if (first >= bytes) return;
    const int64_t left = bytes - first;
    const uint32_t size = static_cast<uint32_t>(left < kSlice ? left / 16 * 16 : kSlice);
    if (size) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + first), "r"(size) : "memory");
#endif
}

// Prefetches on a side stream forked from and joined back to the loop's stream, capturable: between
// begin() and end() of one capture, `ahead(p, bytes)` forks a prefetch from the stream's current
// point. Does nothing on devices older than compute capability 9.0 (enabled() false).
class Prefetcher {
  public:
    // `on`: the switch; the device must be current.
    explicit Prefetcher(bool on) {
        int device = 0, major = 0;
        if (!on || cudaGetDevice(&device) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess || major < 9) {
            return;
        }
        if (cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking) != cudaSuccess ||
            cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming) != cudaSuccess ||
            cudaEventCreateWithFlags(&join_, cudaEventDisableTiming) != cudaSuccess) {
            release();
        }
    }
    ~Prefetcher() { release(); }
    Prefetcher(const Prefetcher&) = delete;
    Prefetcher& operator=(const Prefetcher&) = delete;

    bool enabled() const { return side_ != nullptr; }

    // From `main`'s current point, a prefetch of [p, p + bytes) on the side branch.
    void ahead(cudaStream_t main, const void* p, int64_t bytes) {
        if (!side_ || !p || bytes < 16 || reinterpret_cast<uintptr_t>(p) % 16) return;
        cudaEventRecord(fork_, main);
        cudaStreamWaitEvent(side_, fork_, 0);
        const int64_t slices = (bytes + kSlice - 1) / kSlice;
        const int threads = 32, grid = static_cast<int>((slices + threads - 1) / threads);
        l2_prefetch_kernel<<<grid, threads, 0, side_>>>(static_cast<const char*>(p), bytes);
        forked_ = true;
    }
    // Joins the side branch back into `main` (a capture must end with every forked stream joined).
    void end(cudaStream_t main) {
        if (!side_ || !forked_) return;
        cudaEventRecord(join_, side_);
        cudaStreamWaitEvent(main, join_, 0);
        forked_ = false;
    }

  private:
    void release() {
        if (join_) cudaEventDestroy(join_);
        if (fork_) cudaEventDestroy(fork_);
        if (side_) cudaStreamDestroy(side_);
        side_ = nullptr;
        fork_ = join_ = nullptr;
    }
    cudaStream_t side_ = nullptr;
    cudaEvent_t fork_ = nullptr, join_ = nullptr;
    bool forked_ = false;
};

}  // namespace l2_prefetch
}  // namespace vla_edge
