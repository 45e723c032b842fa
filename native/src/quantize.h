// ggml's own quantisers, exposed for `vla-edge pack quantize`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ggml.h"

namespace vla_edge {

ggml_type type_from_name(const std::string& name);  // "Q4_K" -> GGML_TYPE_Q4_K; throws if unknown

// Quantise n_rows x n_per_row float32 values into `dst` (ggml_row_size(type, n_per_row) * n_rows
// bytes). Throws if the row length is not a multiple of the type's block size.
// `importance` (nullable): n_per_row non-negative weights per input column, the same for every
// row (llama.cpp's imatrix: mean squared activation per input channel); ggml's K-quant quantisers
// minimise the error weighted by it (`quant_weights` of ggml_quantize_chunk; Q8_0 ignores it).
size_t quantize_rows(ggml_type type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                     const float* importance = nullptr);

// Decode n_rows rows of n_per_row values stored as `type` into `to` (F16 or BF16: ggml's own
// dequantiser, then ggml's round-to-nearest conversion), split across up to `threads` threads: how
// matrices are widened for a GPU's tensor-core products (device_weights=f16 / bf16), ~3.5 GB for a
// full-size pi0.5 pack. Throws std::invalid_argument for another `to` or an undecodable `type`.
void widen_rows(ggml_type type, const uint8_t* src, ggml_type to, void* dst, int64_t n_rows, int64_t n_per_row,
                int threads);

}  // namespace vla_edge
