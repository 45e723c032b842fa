#include "kinematics.h"

#include <cmath>

namespace vla_edge::safety {
namespace {

Mat4 identity() {
    Mat4 m{};
    m[0] = m[5] = m[10] = m[15] = 1.0;
    return m;
}

Mat4 mul(const Mat4& a, const Mat4& b) {
    Mat4 c{};
    for (int r = 0; r < 4; ++r) {
        for (int k = 0; k < 4; ++k) {
            const double x = a[r * 4 + k];
            for (int col = 0; col < 4; ++col) c[r * 4 + col] += x * b[k * 4 + col];
        }
    }
    return c;
}

// URDF <origin xyz rpy>: R = Rz(yaw) Ry(pitch) Rx(roll), then the translation.
Mat4 fixed_transform(const Vec3& xyz, const Vec3& rpy) {
    const double cr = std::cos(rpy[0]), sr = std::sin(rpy[0]);
    const double cp = std::cos(rpy[1]), sp = std::sin(rpy[1]);
    const double cy = std::cos(rpy[2]), sy = std::sin(rpy[2]);
    return {cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr, xyz[0],
            sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr, xyz[1],
            -sp,     cp * sr,                cp * cr,                xyz[2],
            0.0,     0.0,                    0.0,                    1.0};
}

// Standard DH: Rz(theta) Tz(d) Tx(a) Rx(alpha).
Mat4 dh_transform(double theta, double a, double alpha, double d) {
    const double ct = std::cos(theta), st = std::sin(theta), ca = std::cos(alpha), sa = std::sin(alpha);
    return {ct, -st * ca, st * sa, a * ct,
            st, ct * ca,  -ct * sa, a * st,
            0.0, sa,      ca,       d,
            0.0, 0.0,     0.0,      1.0};
}

// Rotation by `angle` about unit `k` (Rodrigues): I + s K + (1 - c) K^2.
Mat4 axis_rotation(double angle, const Vec3& k) {
    const double c = std::cos(angle), s = std::sin(angle), t = 1.0 - c;
    const double x = k[0], y = k[1], z = k[2];
    return {c + t * x * x,     t * x * y - s * z, t * x * z + s * y, 0.0,
            t * x * y + s * z, c + t * y * y,     t * y * z - s * x, 0.0,
            t * x * z - s * y, t * y * z + s * x, c + t * z * z,     0.0,
            0.0,               0.0,               0.0,               1.0};
}

}  // namespace

Kinematics::Kinematics(const std::vector<ArmSpec>& arms) {
    for (const ArmSpec& spec : arms) {
        Arm arm;
        arm.joints = spec.joint_indices;
        arm.base = fixed_transform(spec.base_xyz, spec.base_rpy);
        arm.tool = identity();
        arm.tool[3] = spec.tool_xyz[0];
        arm.tool[7] = spec.tool_xyz[1];
        arm.tool[11] = spec.tool_xyz[2];
        for (size_t j = 0; j < spec.joint_indices.size(); ++j) {
            Link link{};
            link.is_dh = spec.is_dh;
            if (spec.is_dh) {
                link.a = spec.dh_a[j];
                link.alpha = spec.dh_alpha[j];
                link.d = spec.dh_d[j];
                link.theta_offset = spec.dh_theta_offset.empty() ? 0.0 : spec.dh_theta_offset[j];
            } else {
                link.origin = fixed_transform(spec.chain_xyz[j], spec.chain_rpy[j]);
                const Vec3& a = spec.chain_axis[j];
                const double norm = std::sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]);
                link.axis = {a[0] / norm, a[1] / norm, a[2] / norm};
            }
            arm.links.push_back(link);
        }
        arms_.push_back(std::move(arm));
    }
}

void Kinematics::tcp_positions(const double* q, double* out) const {
    for (size_t k = 0; k < arms_.size(); ++k) {
        const Arm& arm = arms_[k];
        Mat4 t = arm.base;
        for (size_t j = 0; j < arm.links.size(); ++j) {
            const Link& l = arm.links[j];
            const double angle = q[arm.joints[j]];
            t = l.is_dh ? mul(t, dh_transform(angle + l.theta_offset, l.a, l.alpha, l.d))
                        : mul(mul(t, l.origin), axis_rotation(angle, l.axis));
        }
        // Only the TCP position is needed: t * tool's translation column.
        for (int r = 0; r < 3; ++r) {
            out[k * 3 + r] = t[r * 4 + 0] * arm.tool[3] + t[r * 4 + 1] * arm.tool[7] + t[r * 4 + 2] * arm.tool[11] + t[r * 4 + 3];
        }
    }
}

}  // namespace vla_edge::safety
