// Camera image pre-processing exactly as openpi does it for pi0.5 (and as Python did with PIL):
// keep the aspect ratio, resize with PIL's bilinear filter (a triangle filter widened by the
// down-scaling factor, 8-bit fixed-point coefficients, horizontal pass then vertical, each pass
// rounded to uint8), pad with black to the square model size, map [0, 255] to [-1, 1].
#pragma once

#include <cstdint>
#include <cstddef>
#include <vector>

namespace vla_edge::policy {

// HxWx3 uint8 (row-major RGB) -> size x size x 3 uint8, aspect preserved, centred, black padding.
std::vector<uint8_t> resize_with_pad(const uint8_t* rgb, int height, int width, int size);

// PIL Image.resize(BILINEAR) of an RGB image to new_h x new_w (the step inside resize_with_pad).
std::vector<uint8_t> resize_bilinear(const uint8_t* rgb, int height, int width, int new_h, int new_w);

// n uint8 values -> float32 in [-1, 1] (SigLIP mean = std = 0.5), as x / 255 * 2 - 1 in float32.
void to_model_range(const uint8_t* src, size_t n, float* dst);

}  // namespace vla_edge::policy
