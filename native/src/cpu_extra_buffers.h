// ggml's CPU "extra" buffer types: weight layouts with their own kernels (interleaved Q4_0/Q4_K/
// Q5_K/Q6_K/Q8_0/... blocks for ggml's repack gemm; only those are used, see the .cpp). A matrix
// placed in such a buffer is re-laid out by ggml_backend_tensor_set and its products run on that
// layout's kernels, whether the graph is run by a scheduler, a CPU backend or ggml_graph_compute.
#pragma once

#include <cstddef>

#include "ggml-backend.h"
#include "ggml.h"

namespace vla_edge {

// The first extra buffer type of the CPU device that would run `weight` x F32 activations with its
// own kernels (the question ggml's scheduler asks, on a dummy product); nullptr when none does, or
// when `weight` is not 2-D (reshaped kernels such as the patch embedding keep the stored layout).
ggml_backend_buffer_type_t cpu_extra_buffer_for(const ggml_tensor* weight);

// Asks for transparent huge pages on the page-aligned part of [p, p + n): advice only (where THP is
// off the kernel ignores it; where it is "madvise"-only, as on many servers, this turns it on).
void advise_huge_pages(void* p, size_t n);

}  // namespace vla_edge
