// What a ggml backend's device can do that ggml itself does not report.
#pragma once

#include "ggml-backend.h"

namespace vla_edge {

// Compute capability of a CUDA backend's device as major * 10 + minor (90 for an H100, 87 for
// Jetson Orin, 121 for GB10); 0 for other backends, builds without CUDA, or when the driver cannot
// say. Read through the CUDA driver API from the device's PCI bus id, which ggml does report.
int cuda_compute_capability(ggml_backend_t backend);

}  // namespace vla_edge
