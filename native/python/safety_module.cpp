// vla_edge._safety: the safety filter's C++ core for Python. No ggml: it builds wherever a C++17
// compiler exists. Python's SafetyFilter (robots/safety/filter.py) owns the MotionPort and calls
// this for every decision, so the Python tests exercise the code the C ABI runs.
// std::invalid_argument (bad config) -> ValueError; FilterRefused -> vla_edge._safety.FilterRefused.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>

#include "safety_filter.h"

namespace py = pybind11;
using namespace vla_edge::safety;

namespace {

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// None -> absent; a 1-D float64 array -> its values; malformed input is passed by Python as an
// empty "malformed" marker (size -1) so the C++ side names the fault.
TickVector tick_vector(const std::optional<DoubleArray>& a, bool malformed) {
    if (malformed) return TickVector{nullptr, -1};
    if (!a) return TickVector{};
    if (a->ndim() != 1) return TickVector{nullptr, -1};
    return TickVector{a->data(), static_cast<long>(a->shape(0))};
}

py::array_t<double> to_array(const std::vector<double>& v) {
    py::array_t<double> out(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

py::tuple step(SafetyFilter& f, std::optional<DoubleArray> target, bool target_malformed, double target_time,
               std::optional<DoubleArray> q, bool q_malformed, double state_time, double velocity_scale, double now) {
    StepResult r;
    {
        py::gil_scoped_release release;
        r = f.step(tick_vector(target, target_malformed), target_time, tick_vector(q, q_malformed), state_time,
                   velocity_scale, now);
    }
    py::list notes;
    for (const auto& iv : r.interventions) {
        notes.append(py::make_tuple(code_name(iv.code), iv.detail, py::tuple(py::cast(iv.joints))));
    }
    py::object command = r.has_command ? py::object(to_array(r.command)) : py::none();
    return py::make_tuple(command, r.sent, r.held, state_name(r.state), notes, r.stop_driver);
}

// TCP positions for q of shape (dof,) or (B, dof) -> (B, n_arms, 3).
py::array_t<double> tcp_positions(const SafetyFilter& f, DoubleArray q) {
    const int n = f.dof();
    if (!((q.ndim() == 1 && q.shape(0) == n) || (q.ndim() == 2 && q.shape(1) == n))) {
        throw std::invalid_argument("q must have shape (" + std::to_string(n) + ",) or (B, " + std::to_string(n) + ")");
    }
    const py::ssize_t batch = q.ndim() == 1 ? 1 : q.shape(0), arms = f.kinematics().n_arms();
    py::array_t<double> out({batch, arms, py::ssize_t{3}});
    for (py::ssize_t b = 0; b < batch; ++b) f.kinematics().tcp_positions(q.data() + b * n, out.mutable_data() + b * arms * 3);
    return out;
}

py::dict limits_dict(const FilterLimits& l) {
    py::dict d;
    d["dt"] = l.dt;
    d["position_min"] = to_array(l.position_min);
    d["position_max"] = to_array(l.position_max);
    d["hardware_min"] = to_array(l.hardware_min);
    d["hardware_max"] = to_array(l.hardware_max);
    d["velocity"] = to_array(l.velocity);
    d["acceleration"] = to_array(l.acceleration);
    d["tcp_speed"] = l.tcp_speed;
    d["tracking_error"] = l.tracking_error;
    d["workspace_min"] = to_array({l.workspace_min.begin(), l.workspace_min.end()});
    d["workspace_max"] = to_array({l.workspace_max.begin(), l.workspace_max.end()});
    d["stale_after_s"] = l.stale_after_s;
    return d;
}

}  // namespace

PYBIND11_MODULE(_safety, m) {
    m.doc() = "vla-edge safety filter core (the code behind vla_edge_safety.h)";
    py::register_exception<FilterRefused>(m, "FilterRefused", PyExc_RuntimeError);

    py::class_<ArmSpec>(m, "ArmSpec")
        .def(py::init<>())
        .def_readwrite("joint_indices", &ArmSpec::joint_indices)
        .def_readwrite("is_dh", &ArmSpec::is_dh)
        .def_readwrite("dh_a", &ArmSpec::dh_a)
        .def_readwrite("dh_alpha", &ArmSpec::dh_alpha)
        .def_readwrite("dh_d", &ArmSpec::dh_d)
        .def_readwrite("dh_theta_offset", &ArmSpec::dh_theta_offset)
        .def_readwrite("chain_xyz", &ArmSpec::chain_xyz)
        .def_readwrite("chain_rpy", &ArmSpec::chain_rpy)
        .def_readwrite("chain_axis", &ArmSpec::chain_axis)
        .def_readwrite("base_xyz", &ArmSpec::base_xyz)
        .def_readwrite("base_rpy", &ArmSpec::base_rpy)
        .def_readwrite("tool_xyz", &ArmSpec::tool_xyz);
    py::class_<GripperSpec>(m, "GripperSpec")
        .def(py::init<>())
        .def_readwrite("index", &GripperSpec::index)
        .def_readwrite("range_min", &GripperSpec::range_min)
        .def_readwrite("range_max", &GripperSpec::range_max)
        .def_readwrite("max_rate", &GripperSpec::max_rate);
    py::class_<FilterSpec>(m, "FilterSpec")
        .def(py::init<>())
        .def_readwrite("dof", &FilterSpec::dof)
        .def_readwrite("control_rate_hz", &FilterSpec::control_rate_hz)
        .def_readwrite("stale_after_s", &FilterSpec::stale_after_s)
        .def_readwrite("hardware_position_min", &FilterSpec::hardware_position_min)
        .def_readwrite("hardware_position_max", &FilterSpec::hardware_position_max)
        .def_readwrite("hardware_velocity", &FilterSpec::hardware_velocity)
        .def_readwrite("hardware_acceleration", &FilterSpec::hardware_acceleration)
        .def_readwrite("hardware_tcp_speed", &FilterSpec::hardware_tcp_speed)
        .def_readwrite("position_min", &FilterSpec::position_min)
        .def_readwrite("position_max", &FilterSpec::position_max)
        .def_readwrite("position_margin", &FilterSpec::position_margin)
        .def_readwrite("velocity", &FilterSpec::velocity)
        .def_readwrite("acceleration", &FilterSpec::acceleration)
        .def_readwrite("max_step", &FilterSpec::max_step)
        .def_readwrite("tcp_speed", &FilterSpec::tcp_speed)
        .def_readwrite("tracking_error", &FilterSpec::tracking_error)
        .def_readwrite("workspace_min", &FilterSpec::workspace_min)
        .def_readwrite("workspace_max", &FilterSpec::workspace_max)
        .def_readwrite("grippers", &FilterSpec::grippers)
        .def_readwrite("arms", &FilterSpec::arms);

    m.def("derive_limits", [](const FilterSpec& s) { return limits_dict(derive_limits(s)); }, py::arg("spec"),
          "Check the spec and return what the filter enforces (ValueError naming the field if invalid).");
    m.def("braking_speed", py::vectorize(&braking_speed), py::arg("distance"), py::arg("accel"), py::arg("dt"));
    m.def(
        "brake_plan",
        [](const std::vector<double>& p, const std::vector<double>& v, const std::vector<double>& a_dt, double dt) {
            const auto plan = brake_plan(p, v, a_dt, dt);
            py::array_t<double> out({static_cast<py::ssize_t>(plan.size()), static_cast<py::ssize_t>(p.size())});
            for (size_t t = 0; t < plan.size(); ++t) std::copy(plan[t].begin(), plan[t].end(), out.mutable_data() + t * p.size());
            return out;
        },
        py::arg("p"), py::arg("v"), py::arg("a_dt"), py::arg("dt"));

    py::class_<SafetyFilter>(m, "FilterCore")
        .def(py::init<const FilterSpec&, bool>(), py::arg("spec"), py::arg("shadow"))
        .def_property_readonly("dof", &SafetyFilter::dof)
        .def_property_readonly("state", [](const SafetyFilter& f) { return state_name(f.state()); })
        .def_property_readonly("last_command", [](const SafetyFilter& f) -> py::object {
            auto c = f.last_command();
            return c ? py::object(to_array(*c)) : py::none();
        })
        .def_property_readonly("limits", [](const SafetyFilter& f) { return limits_dict(f.limits()); })
        .def("step", &step, py::arg("target"), py::arg("target_malformed"), py::arg("target_time"), py::arg("q"),
             py::arg("q_malformed"), py::arg("state_time"), py::arg("velocity_scale"), py::arg("now"),
             "-> (command or None, sent, held, state, [(code, detail, joints)], stop_driver)")
        .def("stop", &SafetyFilter::stop)
        .def("check_watchdog", &SafetyFilter::check_watchdog, py::arg("now"))
        .def("emergency_stop", &SafetyFilter::emergency_stop)
        .def("send_failed", &SafetyFilter::send_failed)
        .def(
            "resume",
            [](SafetyFilter& f, std::optional<DoubleArray> q, bool q_malformed, double state_time, double now) {
                f.resume(tick_vector(q, q_malformed), state_time, now);
            },
            py::arg("q"), py::arg("q_malformed"), py::arg("state_time"), py::arg("now"))
        .def("tcp_positions", &tcp_positions, py::arg("q"), "(dof,) or (B, dof) -> (B, n_arms, 3) TCP positions (m)");
}
