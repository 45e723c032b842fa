// C ABI of the safety filter (vla_edge_safety.h): converts the C structs to the C++ spec, turns
// every exception into an error code + last_error text, and copies results into caller buffers.
#include <cmath>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "safety_filter.h"
#include "vla_edge_safety.h"

using vla_edge::safety::FilterSpec;
using vla_edge::safety::SafetyFilter;
using vla_edge::safety::TickVector;

struct vla_edge_filter {
    std::unique_ptr<SafetyFilter> impl;  // locks itself
    mutable std::mutex details_mutex;
    std::vector<std::string> details;  // of the last step, for vla_edge_filter_detail
};

namespace {

thread_local std::string g_last_error;

int set_error(int code, const std::string& what) {
    g_last_error = what;
    return code;
}

std::vector<double> copy_array(const double* values, int n, const char* field, bool required) {
    if (!values) {
        if (required) throw std::invalid_argument(std::string(field) + ": NULL, expected " + std::to_string(n) + " values");
        return {};
    }
    return std::vector<double>(values, values + n);
}

vla_edge::safety::Vec3 vec3(const double* v) { return {v[0], v[1], v[2]}; }

vla_edge::safety::ArmSpec arm_spec(const vla_edge_filter_arm& a, int k) {
    const std::string where = "kinematics.arms[" + std::to_string(k) + "]";
    if (a.n_joints < 1 || a.n_joints > VLA_EDGE_FILTER_MAX_DOF || !a.joint_indices) {
        throw std::invalid_argument(where + ".joint_indices: expected 1.." + std::to_string(VLA_EDGE_FILTER_MAX_DOF) +
                                    " indices, got " + std::to_string(a.n_joints) + (a.joint_indices ? "" : " (NULL)"));
    }
    vla_edge::safety::ArmSpec s;
    s.joint_indices.assign(a.joint_indices, a.joint_indices + a.n_joints);
    const int n = a.n_joints;
    if (a.kind == VLA_EDGE_ARM_DH) {
        s.is_dh = true;
        s.dh_a = copy_array(a.dh_a, n, (where + ".dh.a").c_str(), true);
        s.dh_alpha = copy_array(a.dh_alpha, n, (where + ".dh.alpha").c_str(), true);
        s.dh_d = copy_array(a.dh_d, n, (where + ".dh.d").c_str(), true);
        s.dh_theta_offset = copy_array(a.dh_theta_offset, n, (where + ".dh.theta_offset").c_str(), false);
    } else if (a.kind == VLA_EDGE_ARM_CHAIN) {
        s.is_dh = false;
        if (!a.chain_xyz || !a.chain_rpy || !a.chain_axis) {
            throw std::invalid_argument(where + ".chain: xyz, rpy and axis must each point to n_joints * 3 values");
        }
        for (int j = 0; j < n; ++j) {
            s.chain_xyz.push_back(vec3(a.chain_xyz + 3 * j));
            s.chain_rpy.push_back(vec3(a.chain_rpy + 3 * j));
            s.chain_axis.push_back(vec3(a.chain_axis + 3 * j));
        }
    } else {
        throw std::invalid_argument(where + ".kind: " + std::to_string(a.kind) + ", expected VLA_EDGE_ARM_DH or VLA_EDGE_ARM_CHAIN");
    }
    s.base_xyz = vec3(a.base_xyz);
    s.base_rpy = vec3(a.base_rpy);
    s.tool_xyz = vec3(a.tool_xyz);
    return s;
}

FilterSpec filter_spec(const vla_edge_filter_config& c) {
    if (c.dof < 1 || c.dof > VLA_EDGE_FILTER_MAX_DOF) {
        throw std::invalid_argument("dof: " + std::to_string(c.dof) + ", expected 1.." + std::to_string(VLA_EDGE_FILTER_MAX_DOF));
    }
    const int n = c.dof;
    FilterSpec s;
    s.dof = n;
    s.control_rate_hz = c.control_rate_hz;
    s.stale_after_s = c.stale_after_s;
    s.hardware_position_min = copy_array(c.hardware_position_min, n, "hardware_limits.position_min", true);
    s.hardware_position_max = copy_array(c.hardware_position_max, n, "hardware_limits.position_max", true);
    s.hardware_velocity = copy_array(c.hardware_velocity, n, "hardware_limits.velocity", true);
    s.hardware_acceleration = copy_array(c.hardware_acceleration, n, "hardware_limits.acceleration", true);
    s.hardware_tcp_speed = c.hardware_tcp_speed;
    s.position_min = copy_array(c.position_min, n, "limits.position_min", false);
    s.position_max = copy_array(c.position_max, n, "limits.position_max", false);
    s.position_margin = c.position_margin;
    s.velocity = copy_array(c.velocity, n, "limits.velocity", true);
    s.acceleration = copy_array(c.acceleration, n, "limits.acceleration", true);
    s.max_step = copy_array(c.max_step, n, "limits.max_step", false);
    s.tcp_speed = c.tcp_speed;
    s.tracking_error = c.tracking_error;
    s.workspace_min = vec3(c.workspace_min);
    s.workspace_max = vec3(c.workspace_max);
    if (c.n_grippers < 0 || (c.n_grippers > 0 && !c.grippers)) {
        throw std::invalid_argument("grippers: n_grippers = " + std::to_string(c.n_grippers) + " with a NULL array");
    }
    for (int k = 0; k < c.n_grippers; ++k) {
        const auto& g = c.grippers[k];
        s.grippers.push_back({g.index, g.range_min, g.range_max, g.max_rate});
    }
    if (c.n_arms < 1 || !c.arms) throw std::invalid_argument("kinematics.arms: expected at least one arm");
    for (int k = 0; k < c.n_arms; ++k) s.arms.push_back(arm_spec(c.arms[k], k));
    return s;
}

template <typename F>
int guarded(F&& f) {
    try {
        f();
        g_last_error.clear();
        return VLA_EDGE_FILTER_OK;
    } catch (const vla_edge::safety::FilterRefused& e) {
        return set_error(VLA_EDGE_FILTER_ERR_REFUSED, e.what());
    } catch (const std::invalid_argument& e) {
        return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, e.what());
    } catch (const std::exception& e) {
        return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, e.what());
    } catch (...) {
        return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "unknown error");
    }
}

TickVector tick_vector(const double* data, int dof) { return data ? TickVector{data, dof} : TickVector{}; }

}  // namespace

extern "C" {

int vla_edge_filter_create(const vla_edge_filter_config* config, int shadow, vla_edge_filter** out) {
    if (!out) return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "out is NULL");
    *out = nullptr;
    if (!config) return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "config is NULL");
    return guarded([&] {
        auto handle = std::make_unique<vla_edge_filter>();
        handle->impl = std::make_unique<SafetyFilter>(filter_spec(*config), shadow != 0);
        *out = handle.release();
    });
}

void vla_edge_filter_destroy(vla_edge_filter* filter) { delete filter; }

int vla_edge_filter_dof(const vla_edge_filter* filter) { return filter ? filter->impl->dof() : -1; }

int vla_edge_filter_step(vla_edge_filter* filter, const double* target, double target_time, const double* q,
                         double state_time, double velocity_scale, double now, double* command,
                         vla_edge_filter_result* result) {
    if (!filter || !command || !result) return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "NULL filter, command or result");
    return guarded([&] {
        const int n = filter->impl->dof();
        const auto r = filter->impl->step(tick_vector(target, n), target_time, tick_vector(q, n), state_time,
                                          velocity_scale, now);
        vla_edge_filter_result out{};
        out.state = static_cast<int>(r.state);
        out.has_command = r.has_command ? 1 : 0;
        out.sent = r.sent ? 1 : 0;
        out.held = r.held ? 1 : 0;
        out.stop_driver = r.stop_driver ? 1 : 0;
        std::lock_guard<std::mutex> lock(filter->details_mutex);
        filter->details.clear();
        for (const auto& iv : r.interventions) {
            if (out.n_interventions == VLA_EDGE_FILTER_MAX_INTERVENTIONS) break;  // at most 4 arise per step
            uint64_t mask = 0;
            for (int j : iv.joints) mask |= uint64_t{1} << j;
            out.codes[out.n_interventions] = iv.code;
            out.joints[out.n_interventions] = mask;
            filter->details.push_back(iv.detail);
            ++out.n_interventions;
        }
        if (r.has_command) std::copy(r.command.begin(), r.command.end(), command);
        *result = out;
    });
}

int vla_edge_filter_resume(vla_edge_filter* filter, const double* q, double state_time, double now) {
    if (!filter) return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "filter is NULL");
    return guarded([&] { filter->impl->resume(tick_vector(q, filter->impl->dof()), state_time, now); });
}

int vla_edge_filter_stop(vla_edge_filter* filter, int* stop_driver) {
    if (!filter || !stop_driver) return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "NULL filter or stop_driver");
    return guarded([&] { *stop_driver = filter->impl->stop() ? 1 : 0; });
}

int vla_edge_filter_estop(vla_edge_filter* filter) {
    if (!filter) return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "filter is NULL");
    return guarded([&] { filter->impl->emergency_stop(); });
}

int vla_edge_filter_send_failed(vla_edge_filter* filter) {
    if (!filter) return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "filter is NULL");
    return guarded([&] { filter->impl->send_failed(); });
}

int vla_edge_filter_check_watchdog(vla_edge_filter* filter, double now, int* tripped) {
    if (!filter || !tripped) return set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "NULL filter or tripped");
    return guarded([&] { *tripped = filter->impl->check_watchdog(now) ? 1 : 0; });
}

int vla_edge_filter_state(const vla_edge_filter* filter) {
    return filter ? static_cast<int>(filter->impl->state()) : set_error(VLA_EDGE_FILTER_ERR_ARGUMENT, "filter is NULL");
}

const char* vla_edge_filter_detail(const vla_edge_filter* filter, int i) {
    if (!filter) return "";
    std::lock_guard<std::mutex> lock(filter->details_mutex);
    if (i < 0 || i >= static_cast<int>(filter->details.size())) return "";
    return filter->details[i].c_str();
}

const char* vla_edge_filter_code_name(int code) { return vla_edge::safety::code_name(code); }

const char* vla_edge_filter_state_name(int state) {
    if (state < VLA_EDGE_FILTER_RUNNING || state > VLA_EDGE_FILTER_ESTOPPED) return "";
    return vla_edge::safety::state_name(static_cast<vla_edge::safety::State>(state));
}

const char* vla_edge_filter_last_error(void) { return g_last_error.c_str(); }

}  // extern "C"
