// Forward kinematics of every arm of a robot, for the safety filter's TCP speed and workspace
// checks. Mirrors vla_edge.robots.kinematics (which stays the simulator's and the tests' oracle;
// tests/robots/test_native_safety.py compares the two on random configurations).
#pragma once

#include <array>
#include <vector>

#include "filter_spec.h"

namespace vla_edge::safety {

using Mat4 = std::array<double, 16>;  // row-major homogeneous transform

class Kinematics {
public:
    explicit Kinematics(const std::vector<ArmSpec>& arms);

    int n_arms() const { return static_cast<int>(arms_.size()); }

    // TCP position (m, world frame) of every arm for one full-robot joint vector: out[n_arms * 3].
    void tcp_positions(const double* q, double* out) const;

private:
    struct Link {
        bool is_dh;
        double a, alpha, d, theta_offset;  // DH
        Mat4 origin;                       // chain: parent <- joint frame before the rotation
        Vec3 axis;                         // chain: unit rotation axis
    };
    struct Arm {
        std::vector<int> joints;
        std::vector<Link> links;
        Mat4 base, tool;
    };
    std::vector<Arm> arms_;
};

}  // namespace vla_edge::safety
