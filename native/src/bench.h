// ggml's own matmul throughput on a given weight shape/type: the ceiling the pipeline is compared to.
#pragma once

#include <string>

namespace vla_edge {

// Mean seconds per mul_mat of an [n_out, n_in] weight of `type_name` with an [n_in, n_tokens]
// F32 activation on the CPU backend with `threads` threads, after one warm-up, over `reps` runs
// (small products are batched into one graph so thread start-up is amortised as in the pipeline).
// layout "stored": the weight as the pack stores it; "repacked": in the CPU backend's extra buffer
// type for it (ggml's interleaved layout and gemm kernels), returning -1 when ggml has none for
// this type/shape on this CPU.
double bench_matmul(const std::string& type_name, int n_out, int n_in, int n_tokens, int threads, int reps,
                    const std::string& layout = "stored");

}  // namespace vla_edge
