#include "pack_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <ryml.hpp>
#include <ryml_std.hpp>

#include "errors.h"
#include "sha256.h"

namespace vla_edge::policy {
namespace {

using Node = ryml::ConstNodeRef;

std::string read_text(const std::string& path, const std::string& role) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw PackFault(path, "cannot read " + role);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Typed access to one manifest field; `where` is its dotted name for error messages.
struct Field {
    Node node;
    std::string file, where;

    [[noreturn]] void fail(const std::string& problem) const { throw PackFault(file + ": " + where, problem); }

    bool has(const char* key) const { return node.is_map() && node.has_child(ryml::to_csubstr(key)); }
    Field operator[](const char* key) const {
        if (!node.is_map()) fail("expected a mapping");
        if (!node.has_child(ryml::to_csubstr(key))) {
            throw PackFault(file + ": " + (where.empty() ? "" : where + ".") + key, "missing field");
        }
        return {node[ryml::to_csubstr(key)], file, where.empty() ? key : where + "." + key};
    }
    std::string str() const {
        if (!node.has_val() || node.val_is_null()) fail("expected a value");
        const ryml::csubstr v = node.val();
        return std::string(v.str, v.len);
    }
    double number() const {
        const std::string s = str();
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0' || !std::isfinite(v)) fail("expected a finite number, got '" + s + "'");
        return v;
    }
    int64_t integer() const {
        const std::string s = str();
        char* end = nullptr;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0') fail("expected an integer, got '" + s + "'");
        return v;
    }
    bool boolean() const {
        const std::string s = str();
        if (s == "true" || s == "True") return true;
        if (s == "false" || s == "False") return false;
        fail("expected true or false, got '" + s + "'");
    }
    std::vector<Field> items() const {
        if (!node.is_seq()) fail("expected a list");
        std::vector<Field> out;
        int i = 0;
        for (Node child : node.children()) out.push_back({child, file, where + "[" + std::to_string(i++) + "]"});
        return out;
    }
    std::vector<std::string> strings() const {
        std::vector<std::string> out;
        for (const Field& f : items()) out.push_back(f.str());
        return out;
    }
    std::vector<double> numbers() const {
        std::vector<double> out;
        for (const Field& f : items()) out.push_back(f.number());
        return out;
    }
};

ryml::Tree parse(const std::string& text, const std::string& path, bool json) {
    try {
        return json ? ryml::parse_json_in_arena(ryml::to_csubstr(path), ryml::to_csubstr(text))
                    : ryml::parse_in_arena(ryml::to_csubstr(path), ryml::to_csubstr(text));
    } catch (const std::exception& e) {
        throw PackFault(path, std::string(json ? "cannot read norm stats JSON: " : "not valid YAML: ") + e.what());
    }
}

void check_listed_file(const std::string& dir, const std::string& role, const FileEntry& entry, Check check) {
    const std::string path = dir + "/" + entry.path;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw PackFault(path, "missing " + role + " file listed in pack.yaml");
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size != entry.size) {
        throw PackFault(path, "size " + std::to_string(size) + " bytes, pack.yaml says " + std::to_string(entry.size) +
                                  " (truncated or replaced?)");
    }
    if (check == Check::kSha256 || (check == Check::kAuto && size <= kAutoHashLimit)) {
        const std::string digest = sha256_file(path);
        if (digest != entry.sha256) {
            throw PackFault(path, "sha256 " + digest + " does not match pack.yaml (" + entry.sha256 + "): file corrupted");
        }
    }
}

FileEntry file_entry(const Field& f) {
    FileEntry e{f["path"].str(), f["sha256"].str(), static_cast<uint64_t>(f["size"].integer())};
    if (e.path.empty() || e.path[0] == '/' || e.path.find("..") != std::string::npos) {
        f["path"].fail("must be a path inside the pack directory");
    }
    return e;
}

QuantileStats stats(const Field& f, size_t min_dim) {
    QuantileStats s;
    size_t width = 0;
    for (const char* key : {"mean", "std", "q01", "q99"}) {
        const std::vector<double> v = f[key].numbers();
        if (v.empty()) f[key].fail("expected a non-empty list of numbers (openpi format)");
        if (v.size() < min_dim) f[key].fail("expected at least " + std::to_string(min_dim) + " entries, got " + std::to_string(v.size()));
        if (width && v.size() != width) f.fail("mean/std/q01/q99 must have the same length");
        width = v.size();
        if (std::string(key) == "q01") s.q01 = v;
        if (std::string(key) == "q99") s.q99 = v;
    }
    for (size_t i = 0; i < width; ++i) {
        if (s.q99[i] < s.q01[i]) f["q99"].fail("q99 < q01 at index " + std::to_string(i));
    }
    return s;
}

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::pair<QuantileStats, QuantileStats> read_norm_stats(const std::string& path, size_t state_dim, size_t action_dim) {
    const std::string text = read_text(path, "norm stats JSON");
    const ryml::Tree tree = parse(text, path, true);
    Field root{tree.crootref(), path, "norm_stats"};
    if (!root.node.is_map()) throw PackFault(path, "expected {'norm_stats': {'state': ..., 'actions': ...}}");
    if (root.has("norm_stats")) root = Field{root.node["norm_stats"], path, "norm_stats"};
    for (const char* key : {"state", "actions"}) {
        if (!root.has(key)) throw PackFault(path, std::string("missing 'norm_stats.") + key + "'");
    }
    return {stats(root["state"], state_dim), stats(root["actions"], action_dim)};
}

PackInfo read_pack(const std::string& dir, Check check) {
    const std::string manifest = dir + "/pack.yaml";
    if (!file_exists(dir)) throw PackFault(dir, "pack directory does not exist");
    if (!file_exists(manifest)) throw PackFault(manifest, "missing (not a pack directory?)");
    const std::string text = read_text(manifest, "pack.yaml");
    const ryml::Tree tree = parse(text, manifest, false);
    const Field root{tree.crootref(), manifest, ""};

    PackInfo p;
    p.dir = dir;
    const int64_t version = root["format_version"].integer();
    if (version != 1) root["format_version"].fail("unsupported pack format version " + std::to_string(version) + " (this vla-edge reads version 1)");
    p.name = root["name"].str();
    p.family = root["family"].str();
    if (p.family != "pi05") root["family"].fail("family '" + p.family + "' has no C++ Policy implementation (pi05 only)");

    const Field cfg = root["config"];
    p.image_size = static_cast<int>(cfg["vision"]["image_size"].integer());
    p.vocab_size = static_cast<int>(cfg["llm"]["vocab_size"].integer());
    p.horizon = static_cast<int>(cfg["action_horizon"].integer());
    p.model_action_dim = static_cast<int>(cfg["action_dim"].integer());
    p.model_state_dim = static_cast<int>(cfg["state_dim"].integer());
    p.max_token_len = static_cast<int>(cfg["max_token_len"].integer());
    p.num_flow_steps = static_cast<int>(cfg["num_flow_steps"].integer());
    p.discrete_state = cfg["discrete_state_input"].boolean();
    p.bos_id = static_cast<int>(cfg["bos_token_id"].integer());
    p.image_slots = cfg["image_slots"].strings();

    const Field files = root["files"];
    for (const char* role : {"weights", "tokenizer", "norm_stats"}) p.files[role] = file_entry(files[role]);
    if (files.has("golden") && !files["golden"].node.val_is_null()) p.files["golden"] = file_entry(files["golden"]);

    p.targets = root["targets"].strings();
    p.state_names = root["state_space"]["names"].strings();
    p.state_units = root["state_space"]["units"].strings();
    const Field actions = root["action_space"];
    p.action_names = actions["names"].strings();
    p.action_units = actions["units"].strings();
    p.control_period_s = actions["control_period_s"].number();
    if (!(p.control_period_s > 0 && p.control_period_s <= 1.0)) actions["control_period_s"].fail("must be in (0, 1] seconds");
    if (p.action_names.empty()) actions["names"].fail("at least one action dimension");
    if (p.action_units.size() != p.action_names.size()) actions["units"].fail("one unit per action name");
    if (p.state_units.size() != p.state_names.size()) root["state_space"]["units"].fail("one unit per state name");
    if (actions.has("delta_mask") && !actions["delta_mask"].node.val_is_null()) {
        for (const Field& f : actions["delta_mask"].items()) p.delta_mask.push_back(f.boolean());
        if (p.delta_mask.size() != p.action_names.size()) actions["delta_mask"].fail("must have one entry per action dimension");
    }
    const Field cams = root["cameras"];
    if (!cams.node.is_map() || cams.node.num_children() == 0) cams.fail("expected a mapping of model slot -> robot camera");
    for (Node child : cams.node.children()) {
        const ryml::csubstr k = child.key();
        const std::string slot(k.str, k.len);
        const Field value{child, manifest, "cameras." + slot};
        if (std::find(p.image_slots.begin(), p.image_slots.end(), slot) == p.image_slots.end()) {
            value.fail("unknown model slot; pi0.5 slots are the config's image_slots");
        }
        p.cameras.emplace_back(slot, value.str());
    }
    p.required_cameras = root["required_cameras"].strings();
    for (const std::string& cam : p.required_cameras) {
        const bool mapped = std::any_of(p.cameras.begin(), p.cameras.end(), [&](const auto& c) { return c.second == cam; });
        if (!mapped) root["required_cameras"].fail("required camera '" + cam + "' is not mapped to any model slot in 'cameras'");
    }
    if (root.has("default_prompt") && !root["default_prompt"].node.val_is_null()) p.default_prompt = root["default_prompt"].str();
    if (static_cast<int>(p.state_names.size()) > p.model_state_dim) {
        root["state_space"].fail(std::to_string(p.state_names.size()) + " dims > model " + std::to_string(p.model_state_dim));
    }

    for (const char* role : {"weights", "tokenizer", "norm_stats", "golden"}) {
        if (p.files.count(role)) check_listed_file(dir, role, p.files.at(role), check);
    }
    std::tie(p.state_stats, p.action_stats) =
        read_norm_stats(p.path("norm_stats"), p.state_names.size(), p.action_names.size());
    return p;
}

ProcessorSpec processor_spec(const PackInfo& p) {
    ProcessorSpec s;
    s.image_size = p.image_size;
    for (const std::string& slot : p.image_slots) {  // the model's slot order: the prefix layout depends on it
        for (const auto& [s_slot, camera] : p.cameras) {
            if (s_slot == slot) s.slot_cameras.emplace_back(slot, camera);
        }
    }
    s.required_cameras = p.required_cameras;
    s.state_dim = static_cast<int>(p.state_names.size());
    s.action_dim = static_cast<int>(p.action_names.size());
    s.model_action_dim = p.model_action_dim;
    s.horizon = p.horizon;
    s.delta_mask = p.delta_mask;
    s.state_stats = p.state_stats;
    s.action_stats = p.action_stats;
    s.tokenizer_path = p.path("tokenizer");
    s.max_token_len = p.max_token_len;
    s.discrete_state = p.discrete_state;
    s.bos_id = p.bos_id;
    s.model_vocab_size = p.vocab_size;
    return s;
}

}  // namespace vla_edge::policy
