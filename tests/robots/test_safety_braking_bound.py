"""A target that moves towards the end of a joint's range and on past it: the filter must have
started braking early enough to stop at the operating range end. Only here does the braking bound
of the velocity window bind (a still target is approached without overshoot by the goal velocity
alone), so this is the test that fails when that bound is removed."""

from __future__ import annotations

import numpy as np
import pytest
from safety_fakes import FakeClock, FakeRobot

from vla_edge.robots.config import load_robot_config
from vla_edge.robots.safety import FilterLimits, SafetyFilter

HOME = {
    "ur3": np.array([0.0, -1.571, 1.571, -1.571, -1.571, 0.0]),
    "arx5": np.array([0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.03]),
}


@pytest.mark.parametrize("robot, joint, direction", [("ur3", 5, 1.0), ("ur3", 5, -1.0), ("arx5", 5, 1.0), ("arx5", 6, 1.0)])
def test_moving_target_past_the_range_end_stops_inside_it(robot, joint, direction):
    cfg = load_robot_config(robot)
    lim = FilterLimits.from_config(cfg)
    dt = lim.dt
    end = lim.position_max[joint] if direction > 0 else lim.position_min[joint]
    q0 = HOME[robot].copy()
    span = lim.position_max[joint] - lim.position_min[joint]
    q0[joint] = end - direction * 0.6 * span
    clock, robot_ = FakeClock(), FakeRobot(cfg, q0)
    filt = SafetyFilter(robot_, cfg, shadow=False, clock=clock)
    target = q0.copy()
    speed = 0.9 * lim.velocity[joint]  # the target itself respects the speed limit
    for _ in range(int(1.5 * span / (speed * dt)) + 200):
        clock.advance(dt)
        target[joint] = np.clip(target[joint] + direction * speed * dt, lim.hardware_min[joint], lim.hardware_max[joint])
        r = filt.step(target.copy(), clock.t, robot_.read_state(clock.t))
        assert r.sent and r.state == "running", r.codes
        robot_.q = r.command.copy()
    sent = np.array(robot_.port.commands)[:, joint]
    assert np.all(sent <= lim.position_max[joint] + 1e-9) and np.all(sent >= lim.position_min[joint] - 1e-9)
    assert abs(sent[-1] - end) < 1e-9  # it did get there, and stopped
    accel = np.abs(np.diff(np.concatenate([[q0[joint]] * 2, sent]), n=2)) / dt**2
    assert accel.max() <= lim.acceleration[joint] * (1 + 1e-9)
