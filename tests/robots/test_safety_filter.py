"""Behaviour of the safety filter tick by tick: what it sends, when it holds, how it stops."""

from __future__ import annotations

import numpy as np
import pytest
from safety_fakes import FakeClock, FakeRobot

from vla_edge.errors import ConfigError
from vla_edge.robots.base import JointState
from vla_edge.robots.config import load_robot_config
from vla_edge.robots.safety import SafetyError, SafetyFilter
from vla_edge.robots.safety.motion import brake_plan, braking_speed

UR3 = load_robot_config("ur3")
HOME = np.array([0.0, -1.571, 1.571, -1.571, -1.571, 0.0])
DT = UR3.control_period_s


def make(shadow: bool = False, q0: np.ndarray = HOME, config=UR3):
    clock = FakeClock()
    robot = FakeRobot(config, q0)
    return SafetyFilter(robot, config, shadow=shadow, clock=clock), robot, clock


def tick(filt: SafetyFilter, robot: FakeRobot, clock: FakeClock, target, **kw):
    clock.advance(DT)
    t_time = kw.pop("target_time", clock.t)
    state = kw.pop("state", robot.read_state(clock.t))
    result = filt.step(target, t_time, state, **kw)
    if result.sent:
        robot.q = result.command.copy()
    return result


def test_live_opens_motion_once_and_sends_every_tick():
    filt, robot, clock = make()
    assert robot.open_calls == 1
    for _ in range(5):
        r = tick(filt, robot, clock, HOME + 0.001)
        assert r.sent and not r.held and r.state == "running"
    assert len(robot.port.commands) == 5


def test_shadow_never_opens_motion_but_reports_the_command():
    filt, robot, clock = make(shadow=True)
    r = tick(filt, robot, clock, HOME + 0.001)
    assert robot.open_calls == 0 and robot.port is None
    assert r.sent and r.command is not None and np.all(np.isfinite(r.command))


def test_small_reachable_target_is_reached_exactly():
    filt, robot, clock = make()
    target = HOME + np.array([0.02, -0.01, 0.015, 0.0, 0.01, -0.02])
    for _ in range(200):
        r = tick(filt, robot, clock, target)
    np.testing.assert_allclose(r.command, target, atol=1e-12)
    assert r.interventions == ()


def test_moving_target_within_limits_is_tracked_exactly():
    filt, robot, clock = make()
    speed = 0.3 * UR3.limits.velocity[0]  # well inside every limit
    errors = []
    for k in range(1, 400):
        target = HOME.copy()
        target[0] += min(k, 300) * speed * DT * min(1.0, k / 50)  # gentle ramp up, then constant
        r = tick(filt, robot, clock, target)
        errors.append(abs(r.command[0] - target[0]))
    assert max(errors[150:300]) < 1e-9  # constant speed inside the limits: tracked exactly
    assert max(errors[-50:]) < 1e-9  # settled onto the target after it stopped


@pytest.mark.parametrize(
    "bad, code",
    [
        (np.full(6, np.nan), "non_finite_target"),
        (HOME + np.array([np.inf, 0, 0, 0, 0, 0]), "non_finite_target"),
        (HOME + np.array([0, 1e30, 0, 0, 0, 0]), "out_of_range_target"),
        (np.zeros(5), "bad_target"),
        (None, "missing_target"),
    ],
)
def test_bad_target_brakes_to_rest_then_stops_and_latches(bad, code):
    filt, robot, clock = make()
    far = HOME + 0.5
    for _ in range(30):  # get the arm moving at speed
        tick(filt, robot, clock, far)
    moving_v = robot.port.commands[-1] - robot.port.commands[-2]
    assert np.abs(moving_v).max() > 0
    r = tick(filt, robot, clock, bad)
    assert code in r.codes and r.held
    # Braking: same direction, decreasing speed, until at rest; then MotionPort.stop() once.
    steps = []
    while r.state == "braking":
        steps.append(robot.port.commands[-1] - robot.port.commands[-2])
        r = tick(filt, robot, clock, far)  # valid targets are ignored while braking
    assert r.state == "stopped" and robot.port.stops == 1
    speeds = [np.abs(s).max() for s in steps]
    assert all(b <= a + 1e-15 for a, b in zip(speeds, speeds[1:]))
    assert all(np.all(np.sign(s) * np.sign(moving_v) >= 0) for s in steps), "braking must not reverse"
    sent = len(robot.port.commands)
    for _ in range(5):
        r = tick(filt, robot, clock, far)
        assert not r.sent and r.held and r.state == "stopped"
    assert len(robot.port.commands) == sent


@pytest.mark.parametrize(
    "kind, code",
    [("stale_target", "stale_target"), ("future_target", "future_target"), ("no_time", "missing_target_time"),
     ("no_state", "missing_state"), ("stale_state", "stale_state"), ("nan_state", "non_finite_state")],
)
def test_stale_or_missing_inputs_hold(kind, code):
    filt, robot, clock = make()
    tick(filt, robot, clock, HOME)
    clock.advance(DT)
    now = clock.t
    target_time, state = now, robot.read_state(now)
    if kind == "stale_target":
        target_time = now - 2 * UR3.stale_after_s
    elif kind == "future_target":
        target_time = now + 2 * UR3.stale_after_s
    elif kind == "no_time":
        target_time = None
    elif kind == "no_state":
        state = None
    elif kind == "stale_state":
        state = robot.read_state(now - 2 * UR3.stale_after_s)
    else:
        state = JointState(q=np.full(6, np.nan), qd=np.zeros(6), timestamp=now)
    r = filt.step(HOME + 0.01, target_time, state)
    assert code in r.codes and r.held and r.state == "stopped"  # at rest: stops at once
    assert robot.port.stops == 1


def test_tracking_error_stops_live_but_not_shadow():
    for shadow in (False, True):
        filt, robot, clock = make(shadow=shadow)
        tick(filt, robot, clock, HOME)
        robot.q = HOME + np.array([0.0, 0.0, UR3.limits.tracking_error * 2, 0, 0, 0])  # arm blocked / pushed
        r = tick(filt, robot, clock, HOME)
        assert ("tracking_error" in r.codes) == (not shadow)


def test_position_clamped_to_range_minus_margin():
    q0 = HOME.copy()
    q0[5] = UR3.hardware_limits.position_max[5] - 0.2
    filt, robot, clock = make(q0=q0)
    target = q0.copy()
    target[5] = UR3.hardware_limits.position_max[5]  # legal target, inside the margin
    for _ in range(400):
        r = tick(filt, robot, clock, target)
    assert "position_clamped" in r.codes
    assert r.command[5] == pytest.approx(UR3.hardware_limits.position_max[5] - UR3.limits.position_margin, abs=1e-9)


def test_velocity_scale_slows_motion_and_zero_scale_holds():
    speeds = {}
    for scale in (1.0, 0.25):
        filt, robot, clock = make()
        for _ in range(100):
            r = tick(filt, robot, clock, HOME + np.array([0.5, 0, 0, 0, 0, 0]), velocity_scale=scale)
        speeds[scale] = abs(robot.port.commands[-1][0] - robot.port.commands[-2][0]) / DT
    assert speeds[0.25] <= 0.25 * UR3.limits.velocity[0] + 1e-9 < speeds[1.0]
    filt, robot, clock = make()
    r = tick(filt, robot, clock, HOME + 0.1, velocity_scale=float("nan"))
    assert "velocity_scale_zero" in r.codes and r.held


def test_velocity_scale_drop_decelerates_within_acceleration_limit():
    filt, robot, clock = make()
    for _ in range(100):
        tick(filt, robot, clock, HOME + np.array([1.0, 0, 0, 0, 0, 0]))
    for _ in range(60):
        r = tick(filt, robot, clock, HOME + np.array([1.0, 0, 0, 0, 0, 0]), velocity_scale=0.1)
    c = np.array(robot.port.commands)
    acc = np.abs(np.diff(c[:, 0], n=2)) / DT**2
    assert acc.max() <= UR3.limits.acceleration[0] + 1e-6
    assert abs(c[-1, 0] - c[-2, 0]) / DT <= 0.1 * UR3.limits.velocity[0] + 1e-9  # settled at the new limit


def test_workspace_box_holds_motion_that_would_leave_it():
    filt, robot, clock = make()
    # Shoulder lift towards horizontal-down sweeps the TCP below the mounting plane (z < 0).
    target = HOME + np.array([0.0, 1.2, 0.0, 0.0, 0.0, 0.0])
    codes = set()
    for _ in range(600):
        codes |= set(tick(filt, robot, clock, target).codes)
    assert "workspace" in codes
    z = filt._checker.tcp(robot.q)[0, 0, 2]
    assert 0.0 <= z < 0.05, "stopped close to, not beyond, the box floor"


def test_emergency_stop_is_latched():
    filt, robot, clock = make()
    tick(filt, robot, clock, HOME + 0.01)
    filt.emergency_stop()
    assert robot.port.estops == 1
    r = tick(filt, robot, clock, HOME + 0.02)
    assert not r.sent and r.state == "estopped"
    with pytest.raises(SafetyError, match="latched"):
        filt.resume(robot.read_state(clock.t))


def test_resume_after_stop_restarts_from_measured_position():
    filt, robot, clock = make()
    tick(filt, robot, clock, HOME)
    tick(filt, robot, clock, None)
    assert filt.state == "stopped"
    filt.resume(robot.read_state(clock.t))
    r = tick(filt, robot, clock, HOME + 0.001)
    assert r.sent and r.state == "running"


def test_watchdog_stops_when_the_loop_goes_quiet():
    filt, robot, clock = make()
    tick(filt, robot, clock, HOME + 0.001)
    assert not filt.check_watchdog(clock.t + 0.5 * UR3.stale_after_s)
    assert filt.check_watchdog(clock.t + 2 * UR3.stale_after_s)
    assert filt.state == "stopped" and robot.port.stops == 1


def test_driver_failure_while_commanding_stops_and_raises():
    filt, robot, clock = make()

    def boom(q):
        raise ConnectionError("socket closed")

    robot.port.command_joints = boom
    with pytest.raises(SafetyError, match="socket closed"):
        tick(filt, robot, clock, HOME + 0.001)
    assert filt.state == "stopped" and robot.port.stops == 1


def test_driver_with_other_dof_is_rejected_before_motion():
    arx = load_robot_config("arx5")
    robot = FakeRobot(arx, np.zeros(7))
    with pytest.raises(ConfigError, match="DOF"):
        SafetyFilter(robot, UR3, shadow=False)
    assert robot.open_calls == 0


def test_braking_speed_stops_within_distance_for_random_inputs():
    rng = np.random.default_rng(5)
    for _ in range(500):
        d, a, dt = rng.uniform(0, 0.5), rng.uniform(0.5, 20), rng.choice([0.002, 0.008, 0.01, 0.02])
        v = braking_speed(np.array([d]), np.array([a]), dt)[0]
        assert v * dt + v * v / (2 * a) <= d * (1 + 1e-12) + 1e-15
        plan = brake_plan(np.array([0.0]), np.array([v]), np.array([a * dt]), dt)
        travelled = v * dt + (plan[-1, 0] if len(plan) else 0.0)
        assert travelled <= d + 1e-12


def test_resume_is_a_noop_while_running_and_refused_while_braking():
    filt, robot, clock = make()
    for _ in range(20):
        tick(filt, robot, clock, HOME + 0.3)
    before = filt.last_command
    filt.resume(JointState(q=HOME, qd=np.zeros(6), timestamp=clock.t))  # would be a jump if it re-anchored
    np.testing.assert_array_equal(filt.last_command, before)
    tick(filt, robot, clock, None)
    assert filt.state == "braking"
    with pytest.raises(SafetyError, match="braking"):
        filt.resume(robot.read_state(clock.t))


def test_watchdog_does_not_trip_before_anything_was_commanded():
    filt, robot, clock = make()
    assert not filt.check_watchdog(clock.t + 10.0)
    assert filt.state == "running" and robot.port.stops == 0


def test_numpy_scalar_timestamps_are_accepted_and_junk_state_is_a_hold():
    filt, robot, clock = make()
    clock.advance(DT)
    r = filt.step(HOME + 0.001, np.float32(clock.t), robot.read_state(np.float64(clock.t)))
    assert r.sent, r.codes
    clock.advance(DT)
    junk = JointState(q=np.array(["a"] * 6), qd=np.zeros(6), timestamp=clock.t)
    r = filt.step(HOME, clock.t, junk)
    assert "bad_state" in r.codes and r.held


def test_first_tick_without_state_sends_nothing_and_stays_ready():
    filt, robot, clock = make()
    clock.advance(DT)
    r = filt.step(HOME, clock.t, None)
    assert r.command is None and not r.sent and r.held and "missing_state" in r.codes
    r = tick(filt, robot, clock, HOME + 0.001)
    assert r.sent and r.state == "running"


def test_result_record_is_json_ready():
    import json

    filt, robot, clock = make()
    r = tick(filt, robot, clock, HOME + np.array([0.5, 0, 0, 0, 0, 0]))
    record = json.loads(json.dumps(r.to_dict()))
    assert record["sent"] and record["state"] == "running"
    assert record["command"] == pytest.approx(list(r.command))
    assert {"code": "velocity_limited", "detail": record["interventions"][0]["detail"], "joints": [0]} in record["interventions"]
