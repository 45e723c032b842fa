// Device time of a short sequence of launches, measured the way the expert loop runs them: captured
// `reps` times into one CUDA graph and replayed, so launch overhead on the host does not count (a
// 50-token product takes a few microseconds, about what the host needs to launch it).
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <stdexcept>
#include <string>

namespace vla_edge {

inline void graph_timer_check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("timing graph: ") + what + ": " + cudaGetErrorString(e));
}

// Microseconds per call of `body` (which enqueues on `stream`); the stream must not be capturing.
inline float graph_time_us(cudaStream_t stream, const std::function<void()>& body, int reps = 10, int replays = 5) {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    float ms = 0.0f;
    graph_timer_check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "beginning capture");
    try {
        for (int i = 0; i < reps; ++i) body();
    } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
    }
    graph_timer_check(cudaStreamEndCapture(stream, &graph), "ending capture");
    cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e == cudaSuccess) e = cudaEventCreate(&start);
    if (e == cudaSuccess) e = cudaEventCreate(&stop);
    if (e == cudaSuccess) e = cudaGraphLaunch(exec, stream);  // warm-up
    if (e == cudaSuccess) e = cudaEventRecord(start, stream);
    for (int i = 0; i < replays && e == cudaSuccess; ++i) e = cudaGraphLaunch(exec, stream);
    if (e == cudaSuccess) e = cudaEventRecord(stop, stream);
    if (e == cudaSuccess) e = cudaEventSynchronize(stop);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (exec) cudaGraphExecDestroy(exec);
    graph_timer_check(e, "replaying");
    return 1000.0f * ms / static_cast<float>(reps * replays);
}

}  // namespace vla_edge
