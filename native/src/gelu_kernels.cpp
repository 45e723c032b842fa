// Built with -O3 -fno-trapping-math (see native/CMakeLists.txt): both branches of tanh are
// computed and blended without branches, which the compiler only vectorises when it may evaluate
// floating-point operations whose results are then discarded.
#include "gelu_kernels.h"

namespace vla_edge {
namespace {

inline float bits_to_float(int32_t bits) { return __builtin_bit_cast(float, bits); }  // memcpy blocks vectorising

// tanh in float32 after Cephes' tanhf: an odd polynomial for |x| <= 0.625, 1 - 2 / (e^2|x| + 1)
// above, with e^z by range reduction z = n ln2 + r and a degree-7 polynomial for e^r. Measured
// max relative error 1.4e-7 against double-precision tanh (libm's tanhf: 1.6e-7).
inline float tanh_f32(float x) {
    const float ax = x < 0.0f ? -x : x;
    const float s = x * x;
    const float small = ((((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s +
                          1.33314422036e-1f) * s - 3.33332819422e-1f) * s * x + x;
    const float z = ax + ax < 88.0f ? ax + ax : 88.0f;  // e^88 is still finite in float32
    const int32_t n = static_cast<int32_t>(z * 1.44269504088896341f + 0.5f);  // z >= 0: truncation = floor
    const float nf = static_cast<float>(n);
    const float r = (z - nf * 0.693359375f) - nf * -2.12194440e-4f;  // ln2 split in two for exactness
    float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
               1.6666665459e-1f) * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const float e = p * bits_to_float((n + 127) << 23);
    // Keep the two selects as separate statements: GCC 12 if-converts (and so vectorises) this form
    // but not the nested ternary. Check with -fopt-info-vec after editing.
    float large = 1.0f - 2.0f / (e + 1.0f);
    large = x < 0.0f ? -large : large;
    return ax > 0.625f ? large : small;  // NaN in -> NaN out (via small)
}

inline float gelu_value(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return x * (0.5f * tanh_f32(k * (x + 0.044715f * (x * x * x))) + 0.5f);
}

}  // namespace

void gelu_tanh_f32(const float* __restrict x, float* __restrict y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu_value(x[i]);
}

void geglu_f32(const float* __restrict gate, const float* __restrict up, float* __restrict y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu_value(gate[i]) * up[i];
}

}  // namespace vla_edge
