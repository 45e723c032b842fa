#include "safety_filter.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace vla_edge::safety {
namespace {

constexpr double kScaleEps = 1e-9;
constexpr double kStateRangeTol = 0.01;  // rad/m: encoder noise at a hard stop is fine, far outside is not
constexpr double kEscalation[] = {1.0, 0.5, 0.25, 0.1};  // fractions of the limited step tried against FK rules
constexpr double kWindowSlack = 1e-12;   // the braking step sits exactly on a window bound

const char* const kCodeNames[VLA_EDGE_IV_COUNT] = {
    "position_clamped", "velocity_limited", "tcp_speed", "workspace", "decelerating",
    "missing_target", "bad_target", "non_finite_target", "out_of_range_target", "missing_target_time",
    "stale_target", "future_target", "missing_state", "bad_state", "non_finite_state",
    "stale_state", "state_out_of_range", "tracking_error", "velocity_scale_zero", "internal_non_finite",
};

std::string fmt(const char* format, double a, double b = 0.0) {
    char buf[160];
    std::snprintf(buf, sizeof buf, format, a, b);
    return buf;
}

double sign(double x) { return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0); }

double brake_step(double v, double a_dt) { return sign(v) * std::max(std::fabs(v) - a_dt, 0.0); }

bool any_nonzero(const std::vector<double>& v) {
    return std::any_of(v.begin(), v.end(), [](double x) { return x != 0.0; });
}

std::string count_mismatch(const char* what, long size, int dof) {
    if (size < 0) return std::string(what) + " is not a numeric vector, expected " + std::to_string(dof) + " values";
    return std::string(what) + " has " + std::to_string(size) + " values, expected " + std::to_string(dof);
}

}  // namespace

const char* code_name(int code) { return code >= 0 && code < VLA_EDGE_IV_COUNT ? kCodeNames[code] : ""; }

const char* state_name(State s) {
    switch (s) {
        case State::Running: return "running";
        case State::Braking: return "braking";
        case State::Stopped: return "stopped";
        case State::Estopped: return "estopped";
    }
    return "";
}

double braking_speed(double distance, double accel, double dt) {
    // Largest v >= 0 with v*dt + v^2/(2a) <= d, written to stay accurate for tiny distances.
    const double d = std::max(distance, 0.0);
    return 2.0 * d / (dt + std::sqrt(dt * dt + 2.0 * d / accel));
}

std::vector<std::vector<double>> brake_plan(const std::vector<double>& p, const std::vector<double>& v,
                                            const std::vector<double>& a_dt, double dt) {
    long ticks = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        ticks = std::max(ticks, static_cast<long>(std::ceil(std::fabs(v[i]) / a_dt[i] - 1e-12)));
    }
    std::vector<std::vector<double>> plan;
    std::vector<double> travelled(p.size(), 0.0);
    for (long k = 1; k <= ticks; ++k) {
        std::vector<double> row(p.size());
        for (size_t i = 0; i < p.size(); ++i) {
            travelled[i] += sign(v[i]) * std::max(std::fabs(v[i]) - static_cast<double>(k) * a_dt[i], 0.0) * dt;
            row[i] = p[i] + travelled[i];
        }
        plan.push_back(std::move(row));
    }
    return plan;
}

SafetyFilter::SafetyFilter(const FilterSpec& spec, bool shadow)
    : lim_(derive_limits(spec)), kin_(spec.arms), shadow_(shadow), n_(spec.dof),
      // No fresh tick yet: if anything reached the watchdog before one, it trips (fails closed).
      last_fresh_(-std::numeric_limits<double>::infinity()) {
    v_.assign(n_, 0.0);
}

State SafetyFilter::state() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return state_;
}

std::optional<std::vector<double>> SafetyFilter::last_command() const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!has_p_) return std::nullopt;
    return p_;
}

StepResult SafetyFilter::step(TickVector target, double target_time, TickVector q, double state_time,
                              double velocity_scale, double now) {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_requested_ = false;
    if (state_ == State::Stopped || state_ == State::Estopped) return result(false, true, {});
    if (!has_p_) {
        if (auto fault = check_state(q, state_time, now, false)) return result(false, true, {*fault});
        anchor(q.data);
    }
    std::optional<Intervention> fault = check_state(q, state_time, now, !shadow_);
    if (!fault) fault = check_target(target, target_time, now);
    const double scale = std::isfinite(velocity_scale) && velocity_scale > 0.0 ? std::min(velocity_scale, 1.0) : 0.0;
    if (!fault && scale <= kScaleEps) {
        fault = Intervention{VLA_EDGE_IV_VELOCITY_SCALE_ZERO, fmt("velocity_scale=%g", velocity_scale), {}};
    }
    if (fault || state_ == State::Braking) {
        std::vector<Intervention> notes;
        if (fault) notes.push_back(*fault);
        return brake_or_stop(std::move(notes), now);
    }
    last_fresh_ = now;
    return follow(target.data, scale, now);
}

bool SafetyFilter::stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ == State::Stopped || state_ == State::Estopped) return false;
    to_stopped();
    return true;
}

bool SafetyFilter::check_watchdog(double now) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ == State::Stopped || state_ == State::Estopped || !has_p_) return false;  // nothing streams
    if (now - last_fresh_ <= lim_.stale_after_s) return false;
    to_stopped();
    return true;
}

void SafetyFilter::emergency_stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    state_ = State::Estopped;
}

void SafetyFilter::send_failed() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!prev_p_.empty()) {
        p_ = prev_p_;
        v_ = prev_v_;
        tcp_ = prev_tcp_;
    }
    if (state_ != State::Estopped) to_stopped();
}

void SafetyFilter::resume(TickVector q, double state_time, double now) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ == State::Estopped) {
        throw FilterRefused("emergency stop is latched; create a new SafetyFilter to move again");
    }
    if (state_ == State::Braking) {
        throw FilterRefused("cannot resume while braking; wait until the filter reports 'stopped'");
    }
    if (state_ == State::Running) return;  // re-anchoring a moving arm would be a velocity jump
    if (auto fault = check_state(q, state_time, now, false)) {
        throw FilterRefused(std::string("cannot resume: ") + code_name(fault->code) + " (" + fault->detail + ")");
    }
    anchor(q.data);
    last_fresh_ = now;
    state_ = State::Running;
}

// ---------------------------------------------------------------------------------- internals

void SafetyFilter::anchor(const double* q) {
    p_.assign(q, q + n_);
    v_.assign(n_, 0.0);
    tcp_.resize(static_cast<size_t>(kin_.n_arms()) * 3);
    kin_.tcp_positions(p_.data(), tcp_.data());
    has_p_ = true;
    has_last_target_ = false;
    prev_p_.clear();
}

void SafetyFilter::to_stopped() {
    state_ = State::Stopped;
    stop_requested_ = true;
}

std::optional<Intervention> SafetyFilter::check_state(TickVector q, double state_time, double now,
                                                      bool require_tracking) const {
    if (!q.present()) return Intervention{VLA_EDGE_IV_MISSING_STATE, "no joint state this tick", {}};
    if (q.size != n_) return Intervention{VLA_EDGE_IV_BAD_STATE, count_mismatch("state q", q.size, n_), {}};
    for (int i = 0; i < n_; ++i) {
        if (!std::isfinite(q.data[i])) return Intervention{VLA_EDGE_IV_NON_FINITE_STATE, "state q contains NaN or Inf", {}};
    }
    std::vector<int> outside;
    for (int i = 0; i < n_; ++i) {
        if (q.data[i] < lim_.hardware_min[i] - kStateRangeTol || q.data[i] > lim_.hardware_max[i] + kStateRangeTol) {
            outside.push_back(i);
        }
    }
    if (!outside.empty()) {
        return Intervention{VLA_EDGE_IV_STATE_OUT_OF_RANGE, "measured joints beyond the hardware range", outside};
    }
    if (!std::isfinite(state_time) || std::fabs(now - state_time) > lim_.stale_after_s) {  // future: clock mismatch
        return Intervention{VLA_EDGE_IV_STALE_STATE, fmt("state timestamp %.6f, now %.6f", state_time, now), {}};
    }
    if (require_tracking && has_p_) {
        int worst = 0;
        double worst_err = -1.0;
        for (int i = 0; i < n_; ++i) {
            const double err = std::fabs(q.data[i] - p_[i]);
            if (err > worst_err) {
                worst_err = err;
                worst = i;
            }
        }
        if (worst_err > lim_.tracking_error) {
            return Intervention{VLA_EDGE_IV_TRACKING_ERROR, fmt("|q - command| = %.4f", worst_err), {worst}};
        }
    }
    return std::nullopt;
}

std::optional<Intervention> SafetyFilter::check_target(TickVector target, double target_time, double now) const {
    if (!target.present()) return Intervention{VLA_EDGE_IV_MISSING_TARGET, "no target this tick", {}};
    if (target.size != n_) return Intervention{VLA_EDGE_IV_BAD_TARGET, count_mismatch("target", target.size, n_), {}};
    std::vector<int> bad, out;
    for (int i = 0; i < n_; ++i) {
        const double x = target.data[i];
        if (!std::isfinite(x)) bad.push_back(i);
        else if (x < lim_.hardware_min[i] || x > lim_.hardware_max[i]) out.push_back(i);
    }
    if (!bad.empty()) return Intervention{VLA_EDGE_IV_NON_FINITE_TARGET, "NaN or Inf in target", bad};
    if (!out.empty()) return Intervention{VLA_EDGE_IV_OUT_OF_RANGE_TARGET, "beyond the arm's hardware range", out};
    if (!std::isfinite(target_time)) {
        return Intervention{VLA_EDGE_IV_MISSING_TARGET_TIME, fmt("target_time %g", target_time), {}};
    }
    if (now - target_time > lim_.stale_after_s) {
        return Intervention{VLA_EDGE_IV_STALE_TARGET, fmt("target is %.3f s old", now - target_time), {}};
    }
    if (target_time - now > lim_.stale_after_s) {
        return Intervention{VLA_EDGE_IV_FUTURE_TARGET,
                            fmt("target is %.3f s in the future (clock mismatch?)", target_time - now), {}};
    }
    return std::nullopt;
}

StepResult SafetyFilter::follow(const double* target, double scale, double now) {
    const double dt = lim_.dt;
    std::vector<Intervention> notes;
    std::vector<double> x(n_), target_v(n_, 0.0), lower(n_), upper(n_), v_brake(n_), v_goal(n_), v_cand(n_);
    std::vector<int> clamped, limited;
    for (int i = 0; i < n_; ++i) {
        x[i] = std::min(std::max(target[i], lim_.position_min[i]), lim_.position_max[i]);
        if (x[i] != target[i]) clamped.push_back(i);
    }
    if (!clamped.empty()) notes.push_back({VLA_EDGE_IV_POSITION_CLAMPED, "target outside operating range", clamped});
    if (has_last_target_) {
        for (int i = 0; i < n_; ++i) target_v[i] = (x[i] - last_target_[i]) / dt;
    }
    last_target_ = x;
    has_last_target_ = true;
    // Velocity window: speed limit, acceleration limit, and the braking bound to the range ends.
    bool feasible = true, contains_brake = true;
    for (int i = 0; i < n_; ++i) {
        const double a = lim_.acceleration[i], a_dt = a * dt, vmax = lim_.velocity[i] * scale;
        upper[i] = std::min(std::min(v_[i] + a_dt, vmax), braking_speed(lim_.position_max[i] - p_[i], a, dt));
        lower[i] = std::max(std::max(v_[i] - a_dt, -vmax), -braking_speed(p_[i] - lim_.position_min[i], a, dt));
        v_brake[i] = brake_step(v_[i], a_dt);
        feasible = feasible && lower[i] <= upper[i];
        contains_brake = contains_brake && v_brake[i] >= lower[i] - kWindowSlack && v_brake[i] <= upper[i] + kWindowSlack;
    }
    if (!feasible || !contains_brake) {
        // Only after velocity_scale dropped (or starting outside the range): decelerate at the limit.
        notes.push_back({VLA_EDGE_IV_DECELERATING, "velocity above the scaled limit; braking at the acceleration limit", {}});
        return emit(v_brake, std::move(notes), false, now);
    }
    // Goal velocity: reach the target without overshoot, plus the target's own motion.
    for (int i = 0; i < n_; ++i) {
        const double error = x[i] - p_[i];
        const double along = sign(target_v[i]) == sign(error) ? std::fabs(target_v[i]) : 0.0;
        const double speed = std::min(std::fabs(error) / dt, braking_speed(std::fabs(error), lim_.acceleration[i], dt) + along);
        v_goal[i] = sign(error) * speed;
        v_cand[i] = std::min(std::max(v_goal[i], lower[i]), upper[i]);
        if (std::fabs(v_cand[i] - v_goal[i]) > 1e-12) limited.push_back(i);
    }
    if (!limited.empty()) notes.push_back({VLA_EDGE_IV_VELOCITY_LIMITED, "velocity/acceleration/braking limit", limited});
    const double tcp_limit = lim_.tcp_speed * scale;
    int first_failure = -1;
    std::vector<double> v_new(n_), p_new(n_), tcp_new;
    for (double fraction : kEscalation) {
        for (int i = 0; i < n_; ++i) {
            v_new[i] = v_brake[i] + fraction * (v_cand[i] - v_brake[i]);
            p_new[i] = p_[i] + v_new[i] * dt;
        }
        const int failure = check_plan(p_new, v_new, tcp_limit, tcp_new);
        if (failure < 0) {
            if (first_failure >= 0) {
                notes.push_back({first_failure, fmt("step scaled to %g of the limited step", fraction), {}});
            }
            return emit(v_new, std::move(notes), false, now, &tcp_new);
        }
        if (first_failure < 0) first_failure = failure;
    }
    notes.push_back({first_failure >= 0 ? first_failure : VLA_EDGE_IV_TCP_SPEED,
                     "no shortened step passes; following the braking plan", {}});
    return emit(v_brake, std::move(notes), true, now);
}

int SafetyFilter::check_plan(const std::vector<double>& p_new, const std::vector<double>& v_new, double tcp_limit,
                             std::vector<double>& tcp_first) const {
    // The candidate and its whole braking plan: every TCP in the box, every tick's TCP step under
    // the speed limit (the invariant that makes any later hold safe).
    const double dt = lim_.dt;
    std::vector<double> a_dt(n_);
    for (int i = 0; i < n_; ++i) a_dt[i] = lim_.acceleration[i] * dt;
    std::vector<std::vector<double>> path = brake_plan(p_new, v_new, a_dt, dt);
    path.insert(path.begin(), p_new);
    const size_t m = static_cast<size_t>(kin_.n_arms()) * 3;
    std::vector<double> tcp(path.size() * m);
    bool outside = false;
    for (size_t t = 0; t < path.size(); ++t) {
        kin_.tcp_positions(path[t].data(), tcp.data() + t * m);
        for (size_t j = 0; j < m; ++j) {
            const double x = tcp[t * m + j];
            outside = outside || x < lim_.workspace_min[j % 3] || x > lim_.workspace_max[j % 3];
        }
    }
    tcp_first.assign(tcp.begin(), tcp.begin() + static_cast<long>(m));
    if (outside) return VLA_EDGE_IV_WORKSPACE;
    double worst = 0.0;
    for (size_t t = 0; t < path.size(); ++t) {
        const double* prev = t == 0 ? tcp_.data() : tcp.data() + (t - 1) * m;
        const double* cur = tcp.data() + t * m;
        for (size_t arm = 0; arm < m / 3; ++arm) {
            const double dx = cur[arm * 3] - prev[arm * 3], dy = cur[arm * 3 + 1] - prev[arm * 3 + 1],
                         dz = cur[arm * 3 + 2] - prev[arm * 3 + 2];
            worst = std::max(worst, std::sqrt(dx * dx + dy * dy + dz * dz));
        }
    }
    return worst > tcp_limit * dt ? VLA_EDGE_IV_TCP_SPEED : -1;
}

StepResult SafetyFilter::brake_or_stop(std::vector<Intervention> notes, double now) {
    if (!has_p_) return result(false, true, std::move(notes));  // nothing was ever commanded: stay ready
    if (any_nonzero(v_)) {
        state_ = State::Braking;
        std::vector<double> v_next(n_);
        for (int i = 0; i < n_; ++i) v_next[i] = brake_step(v_[i], lim_.acceleration[i] * lim_.dt);
        StepResult r = emit(v_next, std::move(notes), true, now);
        if (any_nonzero(v_)) return r;
        to_stopped();  // at rest: the driver's controlled stop, once
        r.state = state_;
        r.stop_driver = true;
        r.sent = true;
        return r;
    }
    to_stopped();
    return result(false, true, std::move(notes));
}

StepResult SafetyFilter::emit(const std::vector<double>& v_new, std::vector<Intervention> notes, bool held,
                              double /*now*/, const std::vector<double>* tcp_new) {
    std::vector<double> p_new(n_);
    bool finite = true;
    for (int i = 0; i < n_; ++i) {
        p_new[i] = p_[i] + v_new[i] * lim_.dt;
        finite = finite && std::isfinite(p_new[i]);
    }
    if (!finite) {  // unreachable by construction; fail closed anyway
        to_stopped();
        notes.push_back({VLA_EDGE_IV_INTERNAL_NON_FINITE, "", {}});
        return result(false, true, std::move(notes));
    }
    prev_p_ = p_;
    prev_v_ = v_;
    prev_tcp_ = tcp_;
    p_ = std::move(p_new);
    v_ = v_new;
    if (tcp_new) {
        tcp_ = *tcp_new;
    } else {
        kin_.tcp_positions(p_.data(), tcp_.data());
    }
    return result(true, held, std::move(notes));
}

StepResult SafetyFilter::result(bool sent, bool held, std::vector<Intervention> notes) const {
    StepResult r;
    r.has_command = has_p_;
    if (has_p_) r.command = p_;
    r.sent = sent;
    r.held = held;
    r.state = state_;
    r.stop_driver = stop_requested_;
    r.interventions = std::move(notes);
    return r;
}

}  // namespace vla_edge::safety
