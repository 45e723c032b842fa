// Observation -> model inputs and model actions -> robot actions for pi0.5: the ONE
// implementation of pre- and post-processing. Python's Policy (through vla_edge._policy_io) and
// the C ABI's vla_edge_policy (native/include/vla_edge_policy.h) both call it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "normalize.h"
#include "prompt.h"

namespace vla_edge::policy {

// What the processor needs from a pack (pack.yaml + norm_stats.json + model config).
struct ProcessorSpec {
    int image_size = 224;
    std::vector<std::pair<std::string, std::string>> slot_cameras;  // (model slot, robot camera), model order
    std::vector<std::string> required_cameras;
    int state_dim = 0;   // robot state length
    int action_dim = 0;  // robot action length (a prefix of the model's)
    int model_action_dim = 32;
    int horizon = 50;
    std::vector<bool> delta_mask;  // empty or action_dim entries
    QuantileStats state_stats, action_stats;
    std::string tokenizer_path;
    int max_token_len = 200;
    bool discrete_state = true;
    int bos_id = 2;
    int model_vocab_size = 0;  // 0: not checked
    // The C ABI refuses camera names the pack does not map (a typo must not silently drop a
    // camera); Python's Observation may carry more cameras than the pack uses (robots do).
    bool reject_unknown_cameras = false;
};

// A borrowed camera image: height x width x channels uint8, row-major.
struct CameraView {
    std::string name;
    const uint8_t* data = nullptr;
    int height = 0, width = 0, channels = 3;
};

struct ModelInputs {
    std::vector<float> images;  // n x S x S x 3 in [-1, 1], model slot order
    std::vector<std::string> slots;
    std::vector<int32_t> tokens;
};

// horizon x cols normalised model actions -> horizon x action_dim in robot units: crop to the
// robot's dims, un-normalise, add the state to delta dims. FieldError("actions") on non-finite output.
std::vector<float> actions_to_robot(const QuantileStats& stats, const std::vector<bool>& delta_mask, size_t action_dim,
                                    const float* model_actions, size_t rows, size_t cols, const double* state,
                                    size_t state_len);

class ObservationProcessor {
  public:
    // PackFault when the tokenizer cannot be loaded or does not fit the model / spec is inconsistent.
    explicit ObservationProcessor(ProcessorSpec spec);

    const ProcessorSpec& spec() const { return spec_; }
    int tokenizer_vocab_size() const { return tokenizer_.vocab_size(); }

    // FieldError naming the first bad field (cameras.<name>, state, prompt).
    ModelInputs prepare(const std::vector<CameraView>& cameras, const double* state, size_t state_len,
                        const std::string& prompt) const;
    // FieldError("noise") unless n == horizon * model_action_dim finite floats.
    void check_noise(const float* noise, size_t n) const;
    // actions_to_robot with this pack's action stats and delta mask.
    std::vector<float> finish(const float* model_actions, size_t rows, size_t cols, const double* state,
                              size_t state_len) const;

  private:
    ProcessorSpec spec_;
    PromptTokenizer tokenizer_;
};

}  // namespace vla_edge::policy
