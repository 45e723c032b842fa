// The tensor-core and asynchronous-copy building blocks our kernels share (the attention kernels in
// expert_kernels.cuh and flash_attention.cuh, the stream product), as inline PTX: raw mma.sync and
// ldmatrix rather than WMMA where a kernel needs the fragments' layout (online softmax, paired
// epilogues). In one place so that tests/native/cuda_emulation.h can stand in for exactly these
// (VLA_EDGE_CUDA_EMULATION: the stream product compiled as host C++ and run on the CPU, one std::thread per
// CUDA thread), and every kernel built on them gets the same definitions. Included by CUDA sources only.
#pragma once

#if defined(VLA_EDGE_CUDA_EMULATION) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define VLA_EDGE_MMA_CODE 1  // the device code of kernels built on these (the emulation runs it too)
#else
#define VLA_EDGE_MMA_CODE 0
#endif

#ifndef VLA_EDGE_CUDA_EMULATION
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace vla_edge {

// A kernel launched with programmatic dependent launch (expert_kernels.cuh, launch_kernel, says why) lets
// the next launch start (pdl_launch_dependents) and waits for the kernel before it and its writes
// (pdl_wait); without that launch attribute both are no-ops. pdl_prologue: both at once, where a
// kernel has nothing to do before the wait (the stream product requests its weights in between).
__device__ inline void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ inline void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ inline void pdl_prologue() {
    pdl_launch_dependents();
    pdl_wait();
}

__device__ inline unsigned smem_u32(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

// A spinning thread's pause between two reads of what it waits for (grid_barrier.cuh).
__device__ inline void spin_pause() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    __nanosleep(32);
#endif
}

// The block's dynamic shared memory (its size: the launch's).
__device__ inline unsigned char* dynamic_shared() {
    extern __shared__ __align__(128) unsigned char vla_edge_dynamic_shared[];
    return vla_edge_dynamic_shared;
}

// 16 bytes global -> shared, asynchronously (cp.async, compute capability 8.0+).
__device__ inline void cp_async16(void* dst, const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src));
#endif
}
// ... or zeros where !valid (rows past a matrix's end; nothing is read)
__device__ inline void cp_async16_or_zero(void* dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 16 : 0));
#endif
}
__device__ inline void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int Pending>
__device__ inline void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
#endif
}

// Four 8 x 8 16-bit matrices from shared memory in the tensor cores' fragment layout (lanes 8i .. 8i + 7
// give matrix i's row addresses); Trans: each transposed (a B operand stored k-major).
template <bool Trans = false>
__device__ inline void ldmatrix_x4(unsigned (&r)[4], const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (Trans) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(smem_u32(p)));
    } else {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(smem_u32(p)));
    }
#endif
}

// c += a b for one 16 x 8 x 16 tile, float32 accumulators: F16 inputs (mma_f16) or BF16 (mma_bf16).
#define VLA_EDGE_MMA_16816(name, type)                                                                                   \
    __device__ inline void name(float(&c)[4], const unsigned(&a)[4], unsigned b0, unsigned b1) {                       \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." type "." type                                             \
                     ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                                     \
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                                   \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                                   \
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
VLA_EDGE_MMA_16816(mma_f16, "f16")
VLA_EDGE_MMA_16816(mma_bf16, "bf16")
#else
__device__ inline void mma_f16(float (&)[4], const unsigned (&)[4], unsigned, unsigned) {}
__device__ inline void mma_bf16(float (&)[4], const unsigned (&)[4], unsigned, unsigned) {}
#endif
#undef VLA_EDGE_MMA_16816

}  // namespace vla_edge
#endif  // VLA_EDGE_CUDA_EMULATION
