// A robot control loop in C++ on vla-edge's C ABI only (no Python at run time): load a pack,
// infer one action chunk from a camera image + joint state + prompt, then put the chunk through
// the safety filter at the robot's control rate (125 Hz for the UR3) against a simulated arm (a
// first-order joint model: each joint closes 1 - exp(-dt / 50 ms) of its distance to the command
// per tick) and print what it would send.
//
//   control_loop PACK ROBOT.filter IMAGE.ppm STATE PROMPT [NOISE.bin]
//
// PACK: a pack directory (`vla-edge pack synth --size tiny --out tiny`); ROBOT.filter: the robot's
// filter limits (`vla-edge robot export-filter ur3 --out ur3.filter`); IMAGE.ppm: a binary PPM
// (P6, any size) for the pack's first camera; STATE: comma-separated joint positions (robot
// units); NOISE.bin: optional horizon x model-action-width float32 noise (reproducible results).
// Output, one line each: "policy ...", "action ROW a_1..a_n", "timing STAGE MS", then per tick
// "tick K NOW STATE SENT HELD STOP_DRIVER c_1..c_dof N_CODES CODE...".
//
// Build against the installed library (CMake: find_package(vla_edge CONFIG), target
// vla_edge::vla_edge; see examples/CMakeLists.txt and docs/embedding.md).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "filter_config.h"
#include "vla_edge_policy.h"

namespace {

int fail(const std::string& what, const std::string& detail) {
    std::fprintf(stderr, "control_loop: %s: %s\n", what.c_str(), detail.c_str());
    return 2;
}

// Binary PPM (P6, maxval 255) -> height x width x 3 RGB bytes.
bool read_ppm(const std::string& path, std::vector<uint8_t>* rgb, int* height, int* width) {
    std::ifstream in(path, std::ios::binary);
    std::string magic;
    int maxval = 0;
    if (!(in >> magic >> *width >> *height >> maxval) || magic != "P6" || maxval != 255 || *width < 1 || *height < 1) {
        return false;
    }
    in.get();  // the single whitespace byte before the pixels
    rgb->resize(static_cast<size_t>(*width) * *height * 3);
    return static_cast<bool>(in.read(reinterpret_cast<char*>(rgb->data()), static_cast<std::streamsize>(rgb->size())));
}

std::vector<double> parse_state(const std::string& text) {
    std::vector<double> out;
    std::stringstream s(text);
    for (std::string item; std::getline(s, item, ',');) out.push_back(std::strtod(item.c_str(), nullptr));
    return out;
}

struct PolicyCloser {
    void operator()(vla_edge_policy* p) const { vla_edge_policy_close(p); }
};
struct FilterCloser {
    void operator()(vla_edge_filter* f) const { vla_edge_filter_destroy(f); }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 6 && argc != 7) return fail("usage", "control_loop PACK ROBOT.filter IMAGE.ppm STATE PROMPT [NOISE.bin]");
    const std::vector<double> state = parse_state(argv[4]);

    // 1. The policy: pack checked (manifest, sizes, sha256) and loaded on the x86 target.
    vla_edge_policy_options options;
    vla_edge_policy_default_options(&options);
    vla_edge_policy* raw = nullptr;
    if (vla_edge_policy_open(argv[1], &options, &raw) != VLA_EDGE_OK) return fail("open", vla_edge_policy_last_error());
    std::unique_ptr<vla_edge_policy, PolicyCloser> policy(raw);
    vla_edge_policy_info info;
    vla_edge_policy_describe(policy.get(), &info);
    std::printf("policy %s target %s horizon %d action_dim %d control_period_s %.17g camera %s\n", info.name,
                info.target, info.horizon, info.action_dim, info.control_period_s, vla_edge_policy_camera(policy.get(), 0));

    // 2. One inference: the image goes to the pack's first camera, at whatever size it has.
    vla_edge_camera_image image{vla_edge_policy_camera(policy.get(), 0), nullptr, 0, 0};
    std::vector<uint8_t> rgb;
    if (!read_ppm(argv[3], &rgb, &image.height, &image.width)) return fail(argv[3], "not a binary PPM (P6, maxval 255)");
    image.rgb = rgb.data();
    std::vector<float> noise;
    if (argc == 7) {
        noise.resize(static_cast<size_t>(info.noise_rows) * info.noise_cols);
        std::ifstream in(argv[6], std::ios::binary);
        if (!in.read(reinterpret_cast<char*>(noise.data()), static_cast<std::streamsize>(noise.size() * sizeof(float)))) {
            return fail(argv[6], "expected " + std::to_string(noise.size()) + " float32 values");
        }
    }
    std::vector<float> actions(static_cast<size_t>(info.horizon) * info.action_dim);
    vla_edge_stage_time times[16];
    int n_times = 0;
    if (vla_edge_policy_infer(policy.get(), &image, 1, state.data(), static_cast<int>(state.size()), argv[5],
                              noise.empty() ? nullptr : noise.data(), actions.data(), actions.size(), times, 16,
                              &n_times) != VLA_EDGE_OK) {
        return fail("infer", vla_edge_policy_last_error());  // nothing was moved
    }
    for (int t = 0; t < info.horizon; ++t) {
        std::printf("action %d", t);
        for (int i = 0; i < info.action_dim; ++i) std::printf(" %.9g", actions[static_cast<size_t>(t) * info.action_dim + i]);
        std::printf("\n");
    }
    for (int i = 0; i < n_times; ++i) std::printf("timing %s %.3f\n", times[i].stage, times[i].ms);

    // 3. The safety filter from the robot's limits; never drive an arm without it.
    vla_edge_filter_config config;
    static filter_config_storage storage;
    if (filter_config_read(argv[2], &config, &storage)) return 2;
    vla_edge_filter* raw_filter = nullptr;
    if (vla_edge_filter_create(&config, /*shadow=*/0, &raw_filter) != VLA_EDGE_FILTER_OK) {
        return fail("safety filter", vla_edge_filter_last_error());
    }
    std::unique_ptr<vla_edge_filter, FilterCloser> filter(raw_filter);
    const int dof = vla_edge_filter_dof(filter.get());
    if (dof != info.action_dim || static_cast<int>(state.size()) != dof) {
        return fail("robot", "filter has " + std::to_string(dof) + " DOF, policy actions " +
                                 std::to_string(info.action_dim) + ", state " + std::to_string(state.size()));
    }

    // 4. The control loop: the chunk's row for the current time as the target, at control_rate_hz.
    const double dt = 1.0 / config.control_rate_hz;
    const double follow = 1.0 - std::exp(-dt / 0.05);  // simulated arm: first-order, 50 ms time constant
    const int ticks = static_cast<int>(std::ceil(info.horizon * info.control_period_s * config.control_rate_hz));
    std::vector<double> q(state), target(dof), command(dof);
    double now = 0.0;
    for (int k = 0; k < ticks; ++k) {
        now += dt;
        const int row = std::min(info.horizon - 1, static_cast<int>(std::floor(now / info.control_period_s)));
        for (int i = 0; i < dof; ++i) target[i] = actions[static_cast<size_t>(row) * dof + i];
        vla_edge_filter_result r;
        if (vla_edge_filter_step(filter.get(), target.data(), now, q.data(), now, 1.0, now, command.data(), &r) !=
            VLA_EDGE_FILTER_OK) {
            return fail("filter step", vla_edge_filter_last_error());
        }
        std::printf("tick %d %.17g %s %d %d %d", k, now, vla_edge_filter_state_name(r.state), r.sent, r.held, r.stop_driver);
        for (int i = 0; i < dof; ++i) std::printf(" %.17g", r.has_command ? command[i] : 0.0);
        std::printf(" %d", r.n_interventions);
        for (int i = 0; i < r.n_interventions; ++i) std::printf(" %s", vla_edge_filter_code_name(r.codes[i]));
        std::printf("\n");
        // What a real loop sends to its driver here; the simulated arm follows the command.
        if (r.has_command) {
            for (int i = 0; i < dof; ++i) q[i] += (command[i] - q[i]) * follow;
        }
        if (r.stop_driver) break;
    }
    return 0;
}
