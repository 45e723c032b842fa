"""End to end without hardware: SafetyFilter driving the simulators in fast mode.

The simulator measures what the filter's commands did: joint speeds from successive states and
TCP speed from MuJoCo's TCP site (independent of the filter's own FK). Tolerances: operating
limits + 1e-6 (joint), + 1e-3 m/s (TCP, finite differences of a curved path).
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.robots.sim.render import select_gl_backend

select_gl_backend()
pytest.importorskip("mujoco")

from vla_edge.robots.config import parse_robot_config  # noqa: E402
from vla_edge.robots.kinematics import RobotKinematics  # noqa: E402
from vla_edge.robots.registry import create_robot, load_registered_config  # noqa: E402
from vla_edge.robots.safety.filter import SafetyFilter  # noqa: E402


def _config(name):
    data = load_registered_config(name).model_dump()
    data["connection"] = {"realtime": False, "render": "off"}
    return parse_robot_config(data, name)


def _reachable_target(rng, cfg, q0):
    kin = RobotKinematics(cfg.kinematics)
    lo = np.array(cfg.limits.position_min or cfg.hardware_limits.position_min) + cfg.limits.position_margin + 0.02
    hi = np.array(cfg.limits.position_max or cfg.hardware_limits.position_max) - cfg.limits.position_margin - 0.02
    wmin, wmax = np.array(cfg.workspace.min), np.array(cfg.workspace.max)
    for _ in range(1000):
        q = np.clip(q0 + rng.uniform(-0.4, 0.4, cfg.dof), lo, hi)
        for g in cfg.grippers:
            q[g.index] = rng.uniform(g.range[0] + 0.005, g.range[1] - 0.005)
        tcp = kin.tcp_positions(q)[0]
        if np.all(tcp > wmin + 0.05) and np.all(tcp < wmax - 0.05):
            return q
    raise AssertionError("no reachable target found")


@pytest.mark.parametrize("name", ["ur3-sim", "arx5-sim", "arx5-bimanual-sim"])
def test_filter_moves_sim_to_target_within_operating_limits(name):
    rng = np.random.default_rng()
    cfg = _config(name)
    robot = create_robot(cfg, shadow=False)
    robot.connect()
    try:
        filt = SafetyFilter(robot, cfg, shadow=False, clock=robot.clock)
        q0 = robot.read_state().q
        target = _reachable_target(rng, cfg, q0)
        dt = cfg.control_period_s
        v_lim = np.array(cfg.limits.velocity)
        prev = robot.read_state()
        for _ in range(int(8.0 / dt)):
            res = filt.step(target, robot.clock(), robot.read_state())
            assert res.state == "running", res.interventions
            state = robot.read_state()
            assert np.all(np.abs(state.q - prev.q) / dt <= v_lim + 1e-6)
            tcp_speed = np.linalg.norm((state.tcp_pose - prev.tcp_pose).reshape(-1, 6)[:, :3], axis=1) / dt
            assert np.all(tcp_speed <= cfg.limits.tcp_speed + 1e-3), tcp_speed
            prev = state
        np.testing.assert_allclose(robot.read_state().q, target, atol=1e-3)
    finally:
        robot.disconnect()


def test_shadow_filter_never_moves_the_sim():
    rng = np.random.default_rng()
    cfg = _config("arx5-sim")
    robot = create_robot(cfg, shadow=True)
    robot.connect()
    try:
        filt = SafetyFilter(robot, cfg, shadow=True, clock=robot.clock)
        q0 = robot.read_state().q
        target = _reachable_target(rng, cfg, q0)
        for _ in range(50):
            res = filt.step(target, robot.clock(), robot.read_state())
            assert res.command is not None  # what it would have sent
            robot.step(1)
        np.testing.assert_array_equal(robot.read_state().q, q0)
        assert robot.read_state().status["motion_open"] is False
    finally:
        robot.disconnect()
