// A barrier over every block of a grid, for kernels launched cooperatively (every block resident at
// once, or the launch fails: cudaLaunchAttributeCooperative), in a header the CPU emulation
// (tests/native/cuda_emulation.h, whose cooperative launch runs a grid's blocks at once) compiles too.
// Why our own and not cooperative_groups' grid sync: two words of our own memory that the loops
// allocate and capture, no separate compilation, and the emulation can run it. First user: the
// attention tile kernel's merge in the same launch (TileMerge); also the first measure of what such
// a barrier costs on the GPU, which the persistent expert kernel of docs/gpu.md would take eight of
// per layer and step. Included by CUDA sources only.
#pragma once

#include "mma_primitives.cuh"  // (or its emulation) __threadfence, atomicAdd

namespace vla_edge {

// count: blocks arrived at the barrier now; generation: barriers passed. Both zero when first used; the
// last block to arrive resets count, so they are ready for the next barrier, launch or graph replay.
struct GridBarrier {
    unsigned* count = nullptr;
    unsigned* generation = nullptr;
};

// Every thread of every block of the grid waits here until all have arrived; what any thread wrote
// before it is visible to every thread after it.
__device__ inline void grid_barrier(const GridBarrier& g) {
    const unsigned blocks = gridDim.x * gridDim.y * gridDim.z;
    __threadfence();  // this thread's writes, visible to the grid before its block arrives
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned generation = atomicAdd(g.generation, 0u);  // read before arriving: the release is later
        if (atomicAdd(g.count, 1u) == blocks - 1) {
            atomicExch(g.count, 0u);
            __threadfence();
            atomicAdd(g.generation, 1u);
        } else {
            while (atomicAdd(g.generation, 0u) == generation) spin_pause();
        }
        __threadfence();
    }
    __syncthreads();
}

}  // namespace vla_edge
