"""MuJoCo simulators: limits and rates equal the robot config, targets are tracked within the
arm's velocity/acceleration limits, shadow mode has no motion path, clocks, rendering.

Tracking tolerance: exact (1e-9 rad) once settled, because the motion model lands on the target.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from vla_edge.robots.sim.render import select_gl_backend

select_gl_backend()  # MUJOCO_GL must be chosen before MuJoCo is first imported
pytest.importorskip("mujoco")

from vla_edge.errors import ConfigError, VlaEdgeError  # noqa: E402
from vla_edge.robots.config import parse_robot_config  # noqa: E402
from vla_edge.robots.registry import create_robot, load_registered_config  # noqa: E402
from vla_edge.robots.sim.render import RenderUnavailableError  # noqa: E402

SIMS = ["ur3-sim", "arx5-sim", "arx5-bimanual-sim"]


def _config(name: str, **connection):
    data = load_registered_config(name).model_dump()
    data["connection"] = {"realtime": False, "render": "off", **connection}
    return parse_robot_config(data, f"test {name}")


def _random_target(rng, cfg, scale=0.3):
    lo = np.array(cfg.hardware_limits.position_min)
    hi = np.array(cfg.hardware_limits.position_max)
    q = np.clip(rng.uniform(-scale, scale, cfg.dof), lo + 0.05, hi - 0.05)
    for g in cfg.grippers:
        q[g.index] = rng.uniform(*g.range)
    return q


@pytest.mark.parametrize("name", SIMS)
def test_limits_rates_and_names_match_config(name):
    cfg = _config(name)
    robot = create_robot(cfg, shadow=False)
    robot.connect()
    try:
        caps, world = robot.capabilities, robot.world
        assert caps.joint_names == tuple(cfg.joints) and caps.control_rate_hz == cfg.control_rate_hz
        assert caps.gripper_indices == cfg.gripper_indices and caps.arms == len(cfg.kinematics.arms)
        for lay in world.layouts:
            for jname, j in zip(lay.joint_names, lay.joint_indices):
                np.testing.assert_allclose(world.model.joint(jname).range,
                                           [cfg.hardware_limits.position_min[j], cfg.hardware_limits.position_max[j]])
        np.testing.assert_array_equal(world.v_max, cfg.hardware_limits.velocity)
        state = robot.read_state()
        assert state.q.shape == (cfg.dof,) and state.tcp_pose.shape == (6 * caps.arms,)
    finally:
        robot.disconnect()


@pytest.mark.parametrize("name", SIMS)
def test_target_is_tracked_within_velocity_and_acceleration_limits(name):
    rng = np.random.default_rng()
    cfg = _config(name)
    robot = create_robot(cfg, shadow=False)
    robot.connect()
    try:
        port = robot.open_motion()
        target = _random_target(rng, cfg)
        dt = cfg.control_period_s
        v_max, a_max = np.array(cfg.hardware_limits.velocity), np.array(cfg.hardware_limits.acceleration)
        prev_q, prev_v = robot.read_state().q, np.zeros(cfg.dof)
        t0 = robot.sim_time
        for _ in range(int(3.0 / dt)):
            port.command_joints(target)
            q = robot.read_state().q
            v = (q - prev_q) / dt
            assert np.all(np.abs(v) <= v_max * (1 + 1e-9))
            assert np.all(np.abs(v - prev_v) <= a_max * dt * (1 + 1e-6) + 1e-12)
            prev_q, prev_v = q, v
        assert robot.sim_time == pytest.approx(t0 + int(3.0 / dt) * dt)
        np.testing.assert_allclose(robot.read_state().q, target, atol=1e-9)
    finally:
        robot.disconnect()


def test_shadow_mode_has_no_motion_path_and_time_still_advances():
    robot = create_robot(_config("arx5-sim"), shadow=True)
    robot.connect()
    try:
        with pytest.raises(VlaEdgeError, match="shadow"):
            robot.open_motion()
        q0 = robot.read_state().q
        robot.step(50)
        assert robot.sim_time == pytest.approx(50 * robot.capabilities.control_period_s)
        np.testing.assert_array_equal(robot.read_state().q, q0)
    finally:
        robot.disconnect()


def test_stop_brakes_at_acceleration_limit_and_estop_latches():
    rng = np.random.default_rng()
    cfg = _config("ur3-sim")
    robot = create_robot(cfg, shadow=False)
    robot.connect()
    try:
        port = robot.open_motion()
        far = _random_target(rng, cfg, scale=2.0)
        for _ in range(30):
            port.command_joints(far)
        v0 = robot.read_state().qd
        assert np.abs(v0).max() > 0.1
        port.stop()
        a_max = np.array(cfg.hardware_limits.acceleration)
        robot.step(1)
        v1 = robot.read_state().qd
        assert np.all(np.abs(v1) <= np.maximum(np.abs(v0) - a_max * cfg.control_period_s, 0) + 1e-9)
        robot.step(int(np.max(np.abs(v0) / a_max) / cfg.control_period_s) + 2)
        q_stopped = robot.read_state().q
        robot.step(10)
        np.testing.assert_array_equal(robot.read_state().q, q_stopped)
        port.command_joints(far)  # a controlled stop is not latched
        port.emergency_stop()
        q_e = robot.read_state().q
        with pytest.raises(VlaEdgeError, match="latched"):
            port.command_joints(far)
        robot.step(5)
        np.testing.assert_array_equal(robot.read_state().q, q_e)
    finally:
        robot.disconnect()


def test_bad_target_stops_the_arm():
    cfg = _config("arx5-sim")
    robot = create_robot(cfg, shadow=False)
    robot.connect()
    try:
        port = robot.open_motion()
        with pytest.raises(VlaEdgeError, match="finite"):
            port.command_joints(np.full(cfg.dof - 1, 0.1))
        with pytest.raises(VlaEdgeError, match="finite"):
            port.command_joints(np.array([np.inf] + [0.0] * (cfg.dof - 1)))
    finally:
        robot.disconnect()


def test_realtime_clock_follows_wall_clock():
    cfg = _config("arx5-sim", realtime=True)
    robot = create_robot(cfg, shadow=True)
    robot.connect()
    try:
        t0, s0 = time.monotonic(), robot.sim_time
        time.sleep(0.3)
        elapsed, advanced = time.monotonic() - t0, robot.sim_time - s0
        assert abs(advanced - elapsed) < 0.1, (advanced, elapsed)
        with pytest.raises(VlaEdgeError, match="realtime"):
            robot.step()
    finally:
        robot.disconnect()


@pytest.mark.parametrize(
    "connection, key",
    [({"render": "maybe"}, "connection.render"), ({"image_size": [224]}, "connection.image_size"),
     ({"fps": 3}, "connection.fps"), ({"initial_q": [0.0]}, "connection.initial_q")],
)
def test_settings_errors_name_the_key(connection, key):
    with pytest.raises(ConfigError, match=key):
        create_robot(_config("arx5-sim", **connection), shadow=True)


def _gl_available() -> str | None:
    """Probe in a child process: a failing GL platform can abort the interpreter, not just raise."""
    probe = "import mujoco; mujoco.Renderer(mujoco.MjModel.from_xml_string('<mujoco/>'), 8, 8).close()"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=os.environ.copy())
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"no OpenGL context for MuJoCo with MUJOCO_GL={os.environ.get('MUJOCO_GL')} on this machine ({last})"


@pytest.mark.parametrize("name", ["ur3-sim", "arx5-bimanual-sim"])
def test_cameras_render_and_show_motion(name):
    reason = _gl_available()
    if reason:
        pytest.skip(reason)
    rng = np.random.default_rng()
    cfg = _config(name, render="required", image_size=[64, 80])
    robot = create_robot(cfg, shadow=False)
    robot.connect()
    try:
        before = robot.read_cameras()
        assert set(before) == set(robot.capabilities.camera_names)
        assert all(img.shape == (64, 80, 3) and img.dtype == np.uint8 and img.std() > 1 for img in before.values())
        port = robot.open_motion()
        target = _random_target(rng, cfg, scale=1.0)
        for _ in range(200):
            port.command_joints(target)
        after = robot.read_cameras()
        assert np.abs(after["base"].astype(int) - before["base"].astype(int)).sum() > 0
        assert robot.read_state().status["camera_source"] == "mujoco"
    finally:
        robot.disconnect()


def test_render_fallback_is_labelled_and_required_fails_clearly(monkeypatch):
    import mujoco

    def no_gl(*args, **kwargs):
        raise mujoco.FatalError("gladLoadGL error (simulated for this test)")

    monkeypatch.setattr(mujoco, "Renderer", no_gl)
    robot = create_robot(_config("arx5-sim", render="auto", image_size=[32, 32]), shadow=True)
    robot.connect()
    try:
        images = robot.read_cameras()
        assert set(images) == {"base", "wrist"} and all(i.shape == (32, 32, 3) for i in images.values())
        assert robot.read_state().status["camera_source"] == "synthetic"
    finally:
        robot.disconnect()
    robot = create_robot(_config("arx5-sim", render="required"), shadow=True)
    robot.connect()
    try:
        with pytest.raises(RenderUnavailableError, match="MUJOCO_GL"):
            robot.read_cameras()
    finally:
        robot.disconnect()
