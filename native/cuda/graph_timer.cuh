// Device time of a short sequence of launches, measured the way the expert loop runs them: captured
// `reps` times into one CUDA graph and replayed, so launch overhead on the host does not count (a
// 50-token product takes a few microseconds, about what the host needs to launch it).
#pragma once

#include <cuda_runtime.h>

#include <functional>

#include "loop_common.cuh"

namespace vla_edge {

// Microseconds per call of `body` (which enqueues on `stream`); the stream must not be capturing.
inline float graph_time_us(cudaStream_t stream, const std::function<void()>& body, int reps = 10, int replays = 5) {
    constexpr const char* who = "timing graph";
    cudaGraphExec_t exec = capture_graph(stream, who, [&] {
        for (int i = 0; i < reps; ++i) body();
    });
    cudaEvent_t start = nullptr, stop = nullptr;
    float ms = 0.0f;
    cudaError_t e = cudaEventCreate(&start);
    if (e == cudaSuccess) e = cudaEventCreate(&stop);
    if (e == cudaSuccess) e = cudaGraphLaunch(exec, stream);  // warm-up
    if (e == cudaSuccess) e = cudaEventRecord(start, stream);
    for (int i = 0; i < replays && e == cudaSuccess; ++i) e = cudaGraphLaunch(exec, stream);
    if (e == cudaSuccess) e = cudaEventRecord(stop, stream);
    if (e == cudaSuccess) e = cudaEventSynchronize(stop);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    cudaGraphExecDestroy(exec);
    loop_check(e, who, "replaying");
    return 1000.0f * ms / static_cast<float>(reps * replays);
}

}  // namespace vla_edge
