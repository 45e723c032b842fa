#include "processor.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "errors.h"
#include "images.h"

namespace vla_edge::policy {
namespace {

std::string join_sorted(std::vector<std::string> names) {
    if (names.empty()) return "none";
    std::sort(names.begin(), names.end());
    std::string out = "[";
    for (size_t i = 0; i < names.size(); ++i) out += (i ? ", '" : "'") + names[i] + "'";
    return out + "]";
}

std::string format_double(double v) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    return s.str();
}

}  // namespace

ObservationProcessor::ObservationProcessor(ProcessorSpec spec)
    : spec_(std::move(spec)),
      tokenizer_(spec_.tokenizer_path, spec_.max_token_len, spec_.discrete_state, spec_.bos_id) {
    if (spec_.model_vocab_size > 0 && tokenizer_.vocab_size() > spec_.model_vocab_size) {
        throw PackFault(spec_.tokenizer_path, "tokenizer has " + std::to_string(tokenizer_.vocab_size()) +
                                                  " pieces, model vocab is " + std::to_string(spec_.model_vocab_size));
    }
    if (spec_.action_dim < 1 || spec_.action_dim > spec_.model_action_dim) {
        throw PackFault("action_space", std::to_string(spec_.action_dim) + " dims, the model has " +
                                            std::to_string(spec_.model_action_dim));
    }
    if (!spec_.delta_mask.empty() && static_cast<int>(spec_.delta_mask.size()) != spec_.action_dim) {
        throw PackFault("action_space.delta_mask", "needs one entry per action dimension");
    }
}

ModelInputs ObservationProcessor::prepare(const std::vector<CameraView>& cameras, const double* state,
                                          size_t state_len, const std::string& prompt) const {
    std::vector<std::string> present;
    for (const CameraView& cam : cameras) present.push_back(cam.name);
    for (const std::string& name : spec_.required_cameras) {
        if (std::find(present.begin(), present.end(), name) == present.end()) {
            throw FieldError("cameras." + name, "a required camera image", "missing (present: " + join_sorted(present) + ")");
        }
    }
    for (const CameraView& cam : cameras) {
        const bool mapped = std::any_of(spec_.slot_cameras.begin(), spec_.slot_cameras.end(),
                                        [&](const auto& sc) { return sc.second == cam.name; });
        if (spec_.reject_unknown_cameras && !mapped) {
            std::vector<std::string> known;
            for (const auto& sc : spec_.slot_cameras) known.push_back(sc.second);
            throw FieldError("cameras." + cam.name, "a camera the pack maps (one of " + join_sorted(known) + ")",
                             "an unknown camera");
        }
        if (cam.data == nullptr || cam.channels != 3 || cam.height < 1 || cam.width < 1) {
            throw FieldError("cameras." + cam.name, "HxWx3 uint8 RGB array",
                             std::string(cam.data ? "" : "NULL data, ") + "shape (" + std::to_string(cam.height) +
                                 ", " + std::to_string(cam.width) + ", " + std::to_string(cam.channels) + ")");
        }
    }
    if (state == nullptr && state_len > 0) throw FieldError("state", "1-D float array", "NULL");
    if (static_cast<int>(state_len) != spec_.state_dim) {
        throw FieldError("state", "length " + std::to_string(spec_.state_dim), "length " + std::to_string(state_len));
    }
    for (size_t i = 0; i < state_len; ++i) {
        if (!std::isfinite(state[i])) {
            throw FieldError("state", "finite values",
                             "non-finite value " + format_double(state[i]) + " at index " + std::to_string(i));
        }
    }
    if (!has_text(prompt)) throw FieldError("prompt", "non-empty instruction text", "'" + prompt + "'");

    ModelInputs out;
    const int S = spec_.image_size;
    const size_t plane = static_cast<size_t>(S) * S * 3;
    for (const auto& [slot, camera] : spec_.slot_cameras) {
        const auto it = std::find_if(cameras.begin(), cameras.end(), [&](const CameraView& c) { return c.name == camera; });
        if (it == cameras.end()) continue;  // optional cameras that are absent are masked = left out
        const std::vector<uint8_t> square = resize_with_pad(it->data, it->height, it->width, S);
        out.images.resize(out.images.size() + plane);
        to_model_range(square.data(), plane, out.images.data() + out.images.size() - plane);
        out.slots.push_back(slot);
    }
    if (out.slots.empty()) {
        std::vector<std::string> wanted;
        for (const auto& sc : spec_.slot_cameras) wanted.push_back(sc.second);
        throw FieldError("cameras", "at least one of " + join_sorted(wanted), join_sorted(present));
    }
    std::vector<float> normalized(state_len);
    spec_.state_stats.normalize(state, 1, state_len, normalized.data());
    out.tokens = tokenizer_.encode(prompt, normalized.data(), normalized.size());
    return out;
}

void ObservationProcessor::check_noise(const float* noise, size_t n) const {
    const size_t want = static_cast<size_t>(spec_.horizon) * spec_.model_action_dim;
    const std::string shape = "(" + std::to_string(spec_.horizon) + ", " + std::to_string(spec_.model_action_dim) + ")";
    if (noise == nullptr || n != want) {
        throw FieldError("noise", "finite float32 " + shape, noise ? std::to_string(n) + " values" : "NULL");
    }
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(noise[i])) throw FieldError("noise", "finite float32 " + shape, "non-finite value at index " + std::to_string(i));
    }
}

std::vector<float> actions_to_robot(const QuantileStats& stats, const std::vector<bool>& delta_mask, size_t action_dim,
                                    const float* model_actions, size_t rows, size_t cols, const double* state,
                                    size_t state_len) {
    const size_t n = action_dim;
    if (cols < n) throw std::invalid_argument("model actions have " + std::to_string(cols) + " columns, need " + std::to_string(n));
    std::vector<double> cropped(rows * n);
    for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < n; ++i) cropped[r * n + i] = model_actions[r * cols + i];
    }
    std::vector<float> actions(rows * n);
    stats.unnormalize(cropped.data(), rows, n, actions.data());
    const bool any_delta = std::any_of(delta_mask.begin(), delta_mask.end(), [](bool b) { return b; });
    if (any_delta) {
        if (delta_mask.size() != n) throw std::invalid_argument("delta_mask needs one entry per action dimension");
        if (state == nullptr || state_len < n) throw FieldError("state", "a value for every delta action dimension", "too short");
        for (size_t r = 0; r < rows; ++r) {
            for (size_t i = 0; i < n; ++i) {
                if (delta_mask[i]) actions[r * n + i] += static_cast<float>(state[i]);
            }
        }
    }
    // Never hand a robot non-finite actions; the safety filter would hold, but say why here.
    for (float v : actions) {
        if (!std::isfinite(v)) throw FieldError("actions", "finite model output", "non-finite values from the target");
    }
    return actions;
}

std::vector<float> ObservationProcessor::finish(const float* model_actions, size_t rows, size_t cols,
                                                const double* state, size_t state_len) const {
    return actions_to_robot(spec_.action_stats, spec_.delta_mask, static_cast<size_t>(spec_.action_dim), model_actions,
                            rows, cols, state, state_len);
}

}  // namespace vla_edge::policy
