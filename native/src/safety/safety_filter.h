// The safety filter's decisions: limits, braking plan, state machine and intervention codes.
// This is the one implementation: the C ABI (vla_edge_safety.h) and the Python SafetyFilter both
// run it; neither holds the motion port here (the caller sends what `step` emits).
//
// States: running -> braking -> stopped ; any -> estopped (latched). See docs/safety.md.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "filter_spec.h"
#include "kinematics.h"
#include "vla_edge_safety.h"

namespace vla_edge::safety {

enum class State { Running = VLA_EDGE_FILTER_RUNNING, Braking = VLA_EDGE_FILTER_BRAKING,
                   Stopped = VLA_EDGE_FILTER_STOPPED, Estopped = VLA_EDGE_FILTER_ESTOPPED };

const char* code_name(int code);   // VLA_EDGE_IV_* -> stable text ("" when unknown)
const char* state_name(State s);

// A refused operation (resume after e-stop / while braking / from an unusable state).
class FilterRefused : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Intervention {
    int code;
    std::string detail;
    std::vector<int> joints;
};

// A vector argument of one tick: absent (no data), malformed (not a numeric vector; `size` < 0)
// or `size` values.
struct TickVector {
    const double* data = nullptr;
    long size = 0;
    bool present() const { return data != nullptr || size < 0; }
};

struct StepResult {
    bool has_command = false;
    std::vector<double> command;  // last emitted command (new if sent)
    bool sent = false;
    bool held = false;
    bool stop_driver = false;  // the filter came to rest this call: the caller stops its driver
    State state = State::Running;
    std::vector<Intervention> interventions;
};

class SafetyFilter {
public:
    SafetyFilter(const FilterSpec& spec, bool shadow);

    const FilterLimits& limits() const { return lim_; }
    const Kinematics& kinematics() const { return kin_; }
    int dof() const { return n_; }
    bool shadow() const { return shadow_; }
    State state() const;
    std::optional<std::vector<double>> last_command() const;

    // One control tick; never throws for bad input (bad input is a hold). Non-finite times mean
    // "missing"; a non-finite or <= 0 velocity_scale is a hold.
    StepResult step(TickVector target, double target_time, TickVector q, double state_time, double velocity_scale,
                    double now);

    // Each returns true when the caller must stop its driver (the filter just became stopped).
    bool stop();
    bool check_watchdog(double now);
    void emergency_stop();
    // The last emitted command never reached the arm: forget it and stop.
    void send_failed();
    // Throws FilterRefused (refused: e-stop / braking / unusable state) with the reason.
    void resume(TickVector q, double state_time, double now);

private:
    std::optional<Intervention> check_state(TickVector q, double state_time, double now, bool require_tracking) const;
    std::optional<Intervention> check_target(TickVector target, double target_time, double now) const;
    StepResult follow(const double* target, double scale, double now);
    StepResult brake_or_stop(std::vector<Intervention> notes, double now);
    StepResult emit(const std::vector<double>& v_new, std::vector<Intervention> notes, bool held, double now,
                    const std::vector<double>* tcp_new = nullptr);
    StepResult result(bool sent, bool held, std::vector<Intervention> notes) const;
    // (failed rule or -1, TCP of p_new) for a candidate step and its braking plan.
    int check_plan(const std::vector<double>& p_new, const std::vector<double>& v_new, double tcp_limit,
                   std::vector<double>& tcp_first) const;
    void anchor(const double* q);
    void to_stopped();

    FilterLimits lim_;
    Kinematics kin_;
    bool shadow_;
    int n_;
    mutable std::mutex mutex_;
    bool has_p_ = false;
    std::vector<double> p_, v_, tcp_;  // last emitted command, its velocity, its TCP positions
    std::vector<double> prev_p_, prev_v_, prev_tcp_;
    std::vector<double> last_target_;
    bool has_last_target_ = false;
    double last_fresh_;
    State state_ = State::Running;
    bool stop_requested_ = false;
};

// Pure motion rules (exposed for tests): see robots/safety/motion.py for the derivations.
double braking_speed(double distance, double accel, double dt);
// Commands of the braking plan after p, one row (dof values) per tick; empty if at rest.
std::vector<std::vector<double>> brake_plan(const std::vector<double>& p, const std::vector<double>& v,
                                            const std::vector<double>& a_dt, double dt);

}  // namespace vla_edge::safety
