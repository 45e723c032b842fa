#include "images.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace vla_edge::policy {
namespace {

// Pillow's fixed-point precision for 8-bit resampling: 32 - 8 bits of pixel - 2 bits of headroom.
constexpr int kPrecisionBits = 32 - 8 - 2;

// Per output pixel: first input index, number of inputs, and their fixed-point weights.
struct Coefficients {
    int ksize = 0;
    std::vector<int> first, count;
    std::vector<int32_t> weights;  // out_size x ksize
};

double triangle(double x) {
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

// The bilinear filter's support grows with the down-scaling factor, so every input pixel
// contributes (an area-like average when shrinking), as in Pillow's precompute_coeffs.
Coefficients coefficients(int in_size, int out_size) {
    const double scale = static_cast<double>(in_size) / out_size;
    const double filter_scale = std::max(scale, 1.0);
    const double support = 1.0 * filter_scale;
    Coefficients c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.first.resize(out_size);
    c.count.resize(out_size);
    c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
    std::vector<double> k(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = (xx + 0.5) * scale;
        const double inv = 1.0 / filter_scale;
        int xmin = static_cast<int>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double total = 0.0;
        for (int x = 0; x < xmax; ++x) {
            k[x] = triangle((x + xmin - center + 0.5) * inv);
            total += k[x];
        }
        for (int x = 0; x < xmax; ++x) {
            const double w = total != 0.0 ? k[x] / total : k[x];
            c.weights[static_cast<size_t>(xx) * c.ksize + x] =
                static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
        }
        c.first[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

inline uint8_t clip8(int32_t v) {
    const int32_t shifted = v >> kPrecisionBits;  // arithmetic shift: floor, as Pillow's lookup table
    return static_cast<uint8_t>(std::clamp(shifted, 0, 255));
}

// One separable pass along rows (horizontal) of an h x w x 3 image -> h x out_w x 3.
std::vector<uint8_t> horizontal(const std::vector<uint8_t>& in, int h, int w, int out_w) {
    const Coefficients c = coefficients(w, out_w);
    std::vector<uint8_t> out(static_cast<size_t>(h) * out_w * 3);
    for (int y = 0; y < h; ++y) {
        const uint8_t* row = in.data() + static_cast<size_t>(y) * w * 3;
        for (int xx = 0; xx < out_w; ++xx) {
            const int32_t* k = c.weights.data() + static_cast<size_t>(xx) * c.ksize;
            for (int ch = 0; ch < 3; ++ch) {
                int32_t acc = 1 << (kPrecisionBits - 1);
                for (int x = 0; x < c.count[xx]; ++x) acc += row[(x + c.first[xx]) * 3 + ch] * k[x];
                out[(static_cast<size_t>(y) * out_w + xx) * 3 + ch] = clip8(acc);
            }
        }
    }
    return out;
}

// One pass along columns (vertical) of an h x w x 3 image -> out_h x w x 3.
std::vector<uint8_t> vertical(const std::vector<uint8_t>& in, int h, int w, int out_h) {
    const Coefficients c = coefficients(h, out_h);
    std::vector<uint8_t> out(static_cast<size_t>(out_h) * w * 3);
    for (int yy = 0; yy < out_h; ++yy) {
        const int32_t* k = c.weights.data() + static_cast<size_t>(yy) * c.ksize;
        for (int xx = 0; xx < w; ++xx) {
            for (int ch = 0; ch < 3; ++ch) {
                int32_t acc = 1 << (kPrecisionBits - 1);
                for (int y = 0; y < c.count[yy]; ++y) acc += in[(static_cast<size_t>(y + c.first[yy]) * w + xx) * 3 + ch] * k[y];
                out[(static_cast<size_t>(yy) * w + xx) * 3 + ch] = clip8(acc);
            }
        }
    }
    return out;
}

}  // namespace

std::vector<uint8_t> resize_bilinear(const uint8_t* rgb, int height, int width, int new_h, int new_w) {
    if (height < 1 || width < 1 || new_h < 1 || new_w < 1) {
        throw std::invalid_argument("resize_bilinear: sizes must be >= 1, got " + std::to_string(height) + "x" +
                                    std::to_string(width) + " -> " + std::to_string(new_h) + "x" + std::to_string(new_w));
    }
    std::vector<uint8_t> image(rgb, rgb + static_cast<size_t>(height) * width * 3);
    if (new_w != width) image = horizontal(image, height, width, new_w);
    if (new_h != height) image = vertical(image, height, new_w, new_h);
    return image;
}

std::vector<uint8_t> resize_with_pad(const uint8_t* rgb, int height, int width, int size) {
    if (height == size && width == size) return std::vector<uint8_t>(rgb, rgb + static_cast<size_t>(size) * size * 3);
    // Same float64 arithmetic as the Python it replaces (openpi's resize_with_pad).
    const double ratio = std::max(static_cast<double>(width) / size, static_cast<double>(height) / size);
    const int new_w = std::max(1, static_cast<int>(width / ratio));
    const int new_h = std::max(1, static_cast<int>(height / ratio));
    const std::vector<uint8_t> resized = resize_bilinear(rgb, height, width, new_h, new_w);
    std::vector<uint8_t> canvas(static_cast<size_t>(size) * size * 3, 0);
    const int left = std::max(0, (size - new_w) / 2), top = std::max(0, (size - new_h) / 2);
    for (int y = 0; y < new_h && top + y < size; ++y) {
        const int n = std::min(new_w, size - left);
        std::copy_n(resized.data() + static_cast<size_t>(y) * new_w * 3, static_cast<size_t>(n) * 3,
                    canvas.data() + (static_cast<size_t>(top + y) * size + left) * 3);
    }
    return canvas;
}

void to_model_range(const uint8_t* src, size_t n, float* dst) {
    for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f * 2.0f - 1.0f;
}

}  // namespace vla_edge::policy
