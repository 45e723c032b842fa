#include "filter_spec.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace vla_edge::safety {
namespace {

std::string num(double v) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    return s.str();
}

[[noreturn]] void fail(const std::string& field, const std::string& what) {
    throw std::invalid_argument(field + ": " + what);
}

void check_finite(const std::string& field, double v) {
    if (!std::isfinite(v)) fail(field, "is " + num(v) + ", expected a finite number");
}

void check_positive(const std::string& field, double v) {
    check_finite(field, v);
    if (v <= 0.0) fail(field, "is " + num(v) + ", expected > 0");
}

void check_per_dof(const std::string& field, const std::vector<double>& values, int dof, bool positive) {
    if (static_cast<int>(values.size()) != dof) {
        fail(field, "has " + std::to_string(values.size()) + " values, expected one per DOF (" + std::to_string(dof) + ")");
    }
    for (size_t i = 0; i < values.size(); ++i) {
        const std::string where = field + "[" + std::to_string(i) + "]";
        positive ? check_positive(where, values[i]) : check_finite(where, values[i]);
    }
}

void check_not_above(const std::string& field, const std::vector<double>& op, const std::string& hw_field,
                     const std::vector<double>& hw) {
    for (size_t i = 0; i < op.size(); ++i) {
        if (op[i] > hw[i]) {
            fail(field + "[" + std::to_string(i) + "]", "= " + num(op[i]) + " exceeds the arm's hardware limit " +
                                                            num(hw[i]) + " (" + hw_field + "[" + std::to_string(i) +
                                                            "]); operating limits may only be tightened");
        }
    }
}

void check_arm(const ArmSpec& arm, size_t k, int dof, std::vector<int>& owner) {
    const std::string where = "kinematics.arms[" + std::to_string(k) + "]";
    const size_t n = arm.joint_indices.size();
    if (n == 0) fail(where + ".joint_indices", "is empty");
    for (int j : arm.joint_indices) {
        if (j < 0 || j >= dof) fail(where + ".joint_indices", std::to_string(j) + " is not a joint index (0.." + std::to_string(dof - 1) + ")");
        if (owner[j] != -1) fail(where + ".joint_indices", std::to_string(j) + " is already used by an arm or gripper");
        owner[j] = static_cast<int>(k);
    }
    auto sized = [&](const std::string& name, size_t got) {
        if (got != n) fail(where + "." + name, "has " + std::to_string(got) + " values, the arm has " + std::to_string(n) + " joints");
    };
    auto finite3 = [&](const std::string& name, const Vec3& v) {
        for (int c = 0; c < 3; ++c) check_finite(where + "." + name + "[" + std::to_string(c) + "]", v[c]);
    };
    if (arm.is_dh) {
        sized("dh.a", arm.dh_a.size());
        sized("dh.alpha", arm.dh_alpha.size());
        sized("dh.d", arm.dh_d.size());
        if (!arm.dh_theta_offset.empty()) sized("dh.theta_offset", arm.dh_theta_offset.size());
        for (const auto* v : {&arm.dh_a, &arm.dh_alpha, &arm.dh_d, &arm.dh_theta_offset}) {
            for (double x : *v) check_finite(where + ".dh", x);
        }
    } else {
        sized("chain (xyz)", arm.chain_xyz.size());
        sized("chain (rpy)", arm.chain_rpy.size());
        sized("chain (axis)", arm.chain_axis.size());
        for (size_t j = 0; j < n; ++j) {
            const std::string joint = "chain[" + std::to_string(j) + "]";
            finite3(joint + ".xyz", arm.chain_xyz[j]);
            finite3(joint + ".rpy", arm.chain_rpy[j]);
            finite3(joint + ".axis", arm.chain_axis[j]);
            const auto& a = arm.chain_axis[j];
            if (a[0] * a[0] + a[1] * a[1] + a[2] * a[2] <= 0.0) fail(where + "." + joint + ".axis", "is the zero vector");
        }
    }
    finite3("base_xyz", arm.base_xyz);
    finite3("base_rpy", arm.base_rpy);
    finite3("tool_xyz", arm.tool_xyz);
}

}  // namespace

FilterLimits derive_limits(const FilterSpec& s) {
    const int n = s.dof;
    if (n < 1 || n > 64) fail("dof", "is " + std::to_string(n) + ", expected 1..64");
    check_positive("control_rate_hz", s.control_rate_hz);
    if (s.control_rate_hz > 1000.0) fail("control_rate_hz", "is " + num(s.control_rate_hz) + ", expected <= 1000");
    check_positive("stale_after_s", s.stale_after_s);
    if (s.stale_after_s > 1.0) fail("stale_after_s", "is " + num(s.stale_after_s) + ", expected <= 1.0");
    check_per_dof("hardware_limits.position_min", s.hardware_position_min, n, false);
    check_per_dof("hardware_limits.position_max", s.hardware_position_max, n, false);
    check_per_dof("hardware_limits.velocity", s.hardware_velocity, n, true);
    check_per_dof("hardware_limits.acceleration", s.hardware_acceleration, n, true);
    check_positive("hardware_limits.tcp_speed", s.hardware_tcp_speed);
    for (int i = 0; i < n; ++i) {
        if (s.hardware_position_min[i] >= s.hardware_position_max[i]) {
            fail("hardware_limits.position_min[" + std::to_string(i) + "]",
                 "= " + num(s.hardware_position_min[i]) + " must be below position_max " + num(s.hardware_position_max[i]));
        }
    }
    check_per_dof("limits.velocity", s.velocity, n, true);
    check_per_dof("limits.acceleration", s.acceleration, n, true);
    check_not_above("limits.velocity", s.velocity, "hardware_limits.velocity", s.hardware_velocity);
    check_not_above("limits.acceleration", s.acceleration, "hardware_limits.acceleration", s.hardware_acceleration);
    std::vector<double> lo = s.hardware_position_min, hi = s.hardware_position_max;
    if (!s.position_min.empty()) {
        check_per_dof("limits.position_min", s.position_min, n, false);
        for (int i = 0; i < n; ++i) {
            if (s.position_min[i] < s.hardware_position_min[i]) {
                fail("limits.position_min[" + std::to_string(i) + "]", "= " + num(s.position_min[i]) +
                     " is below the arm's hardware limit " + num(s.hardware_position_min[i]));
            }
        }
        lo = s.position_min;
    }
    if (!s.position_max.empty()) {
        check_per_dof("limits.position_max", s.position_max, n, false);
        check_not_above("limits.position_max", s.position_max, "hardware_limits.position_max", s.hardware_position_max);
        hi = s.position_max;
    }
    std::vector<double> vel = s.velocity;
    const double dt = 1.0 / s.control_rate_hz;
    if (!s.max_step.empty()) {
        check_per_dof("limits.max_step", s.max_step, n, true);
        for (int i = 0; i < n; ++i) vel[i] = std::min(vel[i], s.max_step[i] / dt);
    }
    check_finite("limits.position_margin", s.position_margin);
    if (s.position_margin < 0.0) fail("limits.position_margin", "is " + num(s.position_margin) + ", expected >= 0");
    check_positive("limits.tcp_speed", s.tcp_speed);
    if (s.tcp_speed > s.hardware_tcp_speed) {
        fail("limits.tcp_speed", "= " + num(s.tcp_speed) + " exceeds the arm's hardware limit " + num(s.hardware_tcp_speed) +
             " (hardware_limits.tcp_speed); operating limits may only be tightened");
    }
    check_positive("limits.tracking_error", s.tracking_error);
    for (int c = 0; c < 3; ++c) {
        check_finite("workspace.min", s.workspace_min[c]);
        check_finite("workspace.max", s.workspace_max[c]);
        if (s.workspace_min[c] >= s.workspace_max[c]) fail("workspace", "min must be below max on every axis");
    }
    std::vector<double> margin(n, s.position_margin);
    std::vector<int> owner(n, -1);
    for (size_t k = 0; k < s.grippers.size(); ++k) {
        const GripperSpec& g = s.grippers[k];
        const std::string where = "grippers[" + std::to_string(k) + "]";
        if (g.index < 0 || g.index >= n) fail(where + ".index", "= " + std::to_string(g.index) + " is not a joint index");
        if (owner[g.index] != -1) fail(where + ".index", "= " + std::to_string(g.index) + " listed twice");
        owner[g.index] = -2;
        check_finite(where + ".range", g.range_min);
        check_finite(where + ".range", g.range_max);
        if (!(g.range_min < g.range_max)) fail(where + ".range", "must be [min, max] with min < max");
        if (g.range_min < s.hardware_position_min[g.index] || g.range_max > s.hardware_position_max[g.index]) {
            fail(where + ".range", "is outside the gripper's hardware range");
        }
        check_positive(where + ".max_rate", g.max_rate);
        if (g.max_rate > s.hardware_velocity[g.index]) fail(where + ".max_rate", "exceeds the gripper's hardware velocity limit");
        margin[g.index] = 0.0;
        lo[g.index] = std::max(lo[g.index], g.range_min);
        hi[g.index] = std::min(hi[g.index], g.range_max);
        vel[g.index] = std::min(vel[g.index], g.max_rate);
    }
    if (s.arms.empty()) fail("kinematics.arms", "is empty; the TCP speed and workspace checks need every arm");
    for (size_t k = 0; k < s.arms.size(); ++k) check_arm(s.arms[k], k, n, owner);
    for (int i = 0; i < n; ++i) {
        if (owner[i] == -1) fail("kinematics.arms", "joint " + std::to_string(i) + " is neither in an arm nor a gripper");
        if (owner[i] != -2 && lo[i] + margin[i] >= hi[i] - margin[i]) {
            fail("limits.position_margin", "= " + num(s.position_margin) + " leaves no range for joint " + std::to_string(i));
        }
    }
    FilterLimits lim;
    lim.dt = dt;
    lim.position_min.resize(n);
    lim.position_max.resize(n);
    for (int i = 0; i < n; ++i) {
        lim.position_min[i] = lo[i] + margin[i];
        lim.position_max[i] = hi[i] - margin[i];
    }
    lim.hardware_min = s.hardware_position_min;
    lim.hardware_max = s.hardware_position_max;
    lim.velocity = vel;
    lim.acceleration = s.acceleration;
    lim.tcp_speed = s.tcp_speed;
    lim.tracking_error = s.tracking_error;
    lim.workspace_min = s.workspace_min;
    lim.workspace_max = s.workspace_max;
    lim.stale_after_s = s.stale_after_s;
    return lim;
}

}  // namespace vla_edge::safety
