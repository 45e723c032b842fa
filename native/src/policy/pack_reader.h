// A pack directory opened in C++ the way Python's Pack.open / load_policy does it: pack.yaml read
// (rapidyaml) and checked for what the Policy uses, every listed file's size and (per `check`)
// sha256 compared with the manifest, norm_stats.json read and validated. Errors are PackFault
// naming the file or manifest field, with the wording of the Python checks where they overlap.
// The full schema (quantisation details, engines, provenance) stays with Python's pydantic
// manifest (`vla-edge pack verify`); fields outside what the Policy needs are not interpreted.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "normalize.h"
#include "processor.h"

namespace vla_edge::policy {

enum class Check { kAuto, kSha256, kSize };  // as load_policy's check= ("auto": sha256 up to 2 GiB)

struct FileEntry {
    std::string path, sha256;
    uint64_t size = 0;
};

struct PackInfo {
    std::string dir, name, family;
    // config (pi0.5)
    int image_size = 224, horizon = 50, model_action_dim = 32, model_state_dim = 32, max_token_len = 200;
    int bos_id = 2, num_flow_steps = 10, vocab_size = 0;
    bool discrete_state = true;
    std::vector<std::string> image_slots;
    std::map<std::string, FileEntry> files;  // weights, tokenizer, norm_stats[, golden]
    std::vector<std::string> targets;
    std::vector<std::string> state_names, state_units, action_names, action_units;
    double control_period_s = 0.0;
    std::vector<bool> delta_mask;
    std::vector<std::pair<std::string, std::string>> cameras;  // model slot -> robot camera, manifest order
    std::vector<std::string> required_cameras;
    std::string default_prompt;
    QuantileStats state_stats, action_stats;

    std::string path(const std::string& role) const { return dir + "/" + files.at(role).path; }
};

// Files above this size are size-checked only under Check::kAuto (as Python's AUTO_HASH_LIMIT).
constexpr uint64_t kAutoHashLimit = uint64_t(2) << 30;

PackInfo read_pack(const std::string& dir, Check check = Check::kAuto);
// Only norm_stats.json (Python's load_norm_stats shares it): stats at least state_dim/action_dim wide.
std::pair<QuantileStats, QuantileStats> read_norm_stats(const std::string& path, size_t state_dim, size_t action_dim);
// The processor's spec for a pack: slots in the model's order, stats, tokenizer, limits.
ProcessorSpec processor_spec(const PackInfo& pack);

}  // namespace vla_edge::policy
