// The robot YAML's numbers as the safety filter needs them, and the limits derived from them.
// One derivation serves Python (FilterLimits.from_config) and C (vla_edge_filter_create), so the
// rule "which number wins" exists once.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace vla_edge::safety {

using Vec3 = std::array<double, 3>;

struct ArmSpec {
    std::vector<int> joint_indices;
    bool is_dh = true;
    std::vector<double> dh_a, dh_alpha, dh_d, dh_theta_offset;  // theta_offset empty: zeros
    std::vector<Vec3> chain_xyz, chain_rpy, chain_axis;
    Vec3 base_xyz{}, base_rpy{}, tool_xyz{};
};

struct GripperSpec {
    int index = 0;
    double range_min = 0.0, range_max = 0.0, max_rate = 0.0;
};

// Mirrors RobotConfig's hardware_limits / limits / workspace / grippers / kinematics keys.
struct FilterSpec {
    int dof = 0;
    double control_rate_hz = 0.0;
    double stale_after_s = 0.1;
    std::vector<double> hardware_position_min, hardware_position_max, hardware_velocity, hardware_acceleration;
    double hardware_tcp_speed = 0.0;
    std::vector<double> position_min, position_max;  // empty: hardware range
    double position_margin = 0.0;
    std::vector<double> velocity, acceleration;
    std::vector<double> max_step;  // empty: none
    double tcp_speed = 0.0;
    double tracking_error = 0.0;
    Vec3 workspace_min{}, workspace_max{};
    std::vector<GripperSpec> grippers;
    std::vector<ArmSpec> arms;
};

// What the filter enforces, per DOF in action order (see docs/safety.md "Limits").
struct FilterLimits {
    double dt = 0.0;
    std::vector<double> position_min, position_max;  // operating range shrunk by the margin
    std::vector<double> hardware_min, hardware_max;  // targets beyond these are rejected
    std::vector<double> velocity;                    // at velocity_scale = 1, max_step folded in
    std::vector<double> acceleration;                // never scaled
    double tcp_speed = 0.0;
    double tracking_error = 0.0;
    Vec3 workspace_min{}, workspace_max{};
    double stale_after_s = 0.0;
};

// Checks the spec (throws std::invalid_argument naming the field) and derives the limits.
FilterLimits derive_limits(const FilterSpec& spec);

}  // namespace vla_edge::safety
