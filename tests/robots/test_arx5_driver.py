"""ARX5 CAN driver against emulated motors on a python-can virtual bus.

Every claim about motion is checked on what the emulator received: decoded MIT frames
(`motion_frames`) and raw frames (`all_frames`). Position tolerances: one 16-bit position step
(25/65535 rad) for frame contents; tracking 3e-3 rad (first-order motor model, truncating codec).
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("can")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from can_emulator import MotorBusEmulator  # noqa: E402

from vla_edge.errors import ConfigError, VlaEdgeError  # noqa: E402
from vla_edge.robots.arx5.bus import CanBusError  # noqa: E402
from vla_edge.robots.arx5.driver import MotorFaultError, MotorFeedbackError, make_robot  # noqa: E402
from vla_edge.robots.arx5.motors import PROFILES, gripper_motor_to_width, gripper_width_to_motor  # noqa: E402
from vla_edge.robots.config import parse_robot_config  # noqa: E402
from vla_edge.robots.registry import load_registered_config  # noqa: E402

POS_STEP = 25.0 / 65535
IDS = [1, 2, 4, 5, 6, 7, 8]


def _config(name: str, connection: dict):
    data = load_registered_config(name).model_dump()
    # Generous answer timeout: the emulator shares 2 busy cores with other test processes.
    data["connection"] = {"feedback_timeout_s": 0.5, **connection} if "can_backend" in connection else connection
    return parse_robot_config(data, f"test {name}")


def _motors(profile: str) -> list[tuple[int, str]]:
    return [(m.motor_id, m.kind.value) for m in PROFILES[profile].all]


def _random_pose(rng, config, arm_slice=slice(0, 7)):
    lo = np.array(config.hardware_limits.position_min)[arm_slice][:6] + 0.1
    hi = np.array(config.hardware_limits.position_max)[arm_slice][:6] - 0.1
    return np.append(rng.uniform(lo, hi), rng.uniform(0.01, 0.08))


def _initial(q7) -> dict[int, float]:
    return {mid: (gripper_width_to_motor(v) if mid == 8 else v) for mid, v in zip(IDS, q7)}


@pytest.fixture
def channel():
    return f"arx_{uuid.uuid4().hex[:8]}"


def test_shadow_reads_all_dm_arm_without_any_motion_frame(channel):
    rng = np.random.default_rng()
    cfg = _config("arx5", {"interface": channel, "can_backend": "virtual", "motor_profile": "L5"})
    q0 = _random_pose(rng, cfg)
    with MotorBusEmulator(channel, _motors("L5"), _initial(q0)) as emu:
        robot = make_robot(cfg, shadow=True)
        robot.connect()
        try:
            state = robot.read_state()
            np.testing.assert_allclose(state.q[:6], q0[:6], atol=POS_STEP)
            assert abs(state.q[6] - q0[6]) <= gripper_motor_to_width(POS_STEP) + 1e-12
            with pytest.raises(VlaEdgeError, match="shadow"):
                robot.open_motion()
            emu.settle()
        finally:
            robot.disconnect()
        emu.settle()
        assert emu.motion_frames == []
        assert emu.all_frames and {m.arbitration_id for m in emu.all_frames} == {0x7FF}
        assert not any(m.enabled for m in emu.motors.values())


def test_shadow_x5_refuses_to_poke_ec_motors_and_says_why(channel):
    cfg = _config("arx5", {"interface": channel, "can_backend": "virtual", "feedback_timeout_s": 0.05})
    with MotorBusEmulator(channel, _motors("X5")) as emu:
        robot = make_robot(cfg, shadow=True)
        robot.connect()
        try:
            with pytest.raises(MotorFeedbackError, match=r"\[1, 2, 4\].*EC motors answer only"):
                robot.read_state()
        finally:
            robot.disconnect()
        emu.settle()
        assert emu.motion_frames == []


def test_live_streaming_sends_commanded_targets_and_tracks(channel):
    rng = np.random.default_rng()
    cfg = _config("arx5", {"interface": channel, "can_backend": "virtual"})
    q0 = _random_pose(rng, cfg)
    gains = PROFILES["X5"]
    with MotorBusEmulator(channel, _motors("X5"), _initial(q0)) as emu:
        robot = make_robot(cfg, shadow=False)
        robot.connect()
        try:
            port = robot.open_motion()
            emu.settle()
            assert all(m.enabled for m in emu.motors.values() if m.kind == "dm")
            # The first applied command after enabling holds the measured position.
            first_hold = {}
            for f in emu.motion_frames:
                if f.kp > 0:
                    first_hold.setdefault(f.motor_id, f.pos)
            for mid, q in _initial(q0).items():
                assert abs(first_hold[mid] - q) <= 2 * POS_STEP
            target = np.clip(q0 + rng.uniform(-0.1, 0.1, 7), cfg.hardware_limits.position_min,
                             cfg.hardware_limits.position_max)
            target[6] = rng.uniform(0.01, 0.08)
            n_before = len(emu.motion_frames)
            for _ in range(40):
                port.command_joints(target)
                time.sleep(cfg.control_period_s)
            emu.settle()
            sent = emu.motion_frames[n_before:]
            assert len(sent) == 40 * 7
            expected = dict(zip(IDS, [*target[:6], gripper_width_to_motor(target[6])]))
            kp = dict(zip(IDS, [*gains.kp, gains.gripper_kp]))
            for f in sent:
                assert f.applied
                assert abs(f.pos - expected[f.motor_id]) <= POS_STEP
                assert abs(f.kp - kp[f.motor_id]) <= 500 / 4095 and f.vel == pytest.approx(0, abs=0.03)
            state = robot.read_state()
            np.testing.assert_allclose(state.q, target, atol=3e-3)
        finally:
            robot.disconnect()


def test_stop_holds_measured_position_and_estop_disables(channel):
    rng = np.random.default_rng()
    cfg = _config("arx5", {"interface": channel, "can_backend": "virtual"})
    q0 = _random_pose(rng, cfg)
    with MotorBusEmulator(channel, _motors("X5"), _initial(q0)) as emu:
        robot = make_robot(cfg, shadow=False)
        robot.connect()
        try:
            port = robot.open_motion()
            measured = robot.read_state().q
            emu.settle()
            n = len(emu.motion_frames)
            port.stop()
            emu.settle()
            stop_frames = emu.motion_frames[n:]
            assert sorted(f.motor_id for f in stop_frames) == IDS
            meas = dict(zip(IDS, [*measured[:6], gripper_width_to_motor(measured[6])]))
            for f in stop_frames:
                assert abs(f.pos - meas[f.motor_id]) <= 2 * POS_STEP and f.kp > 0 and f.kd > 0
            n = len(emu.motion_frames)
            port.emergency_stop()
            emu.settle()
            assert not any(m.enabled for m in emu.motors.values() if m.kind == "dm")
            ec = emu.motion_frames[n:]
            assert sorted(f.motor_id for f in ec) == [1, 2, 4]
            assert all(f.kp == 0 and f.kd == 0 and abs(f.tor) < 0.02 for f in ec)
            frames_after_estop = len(emu.all_frames)
            with pytest.raises(VlaEdgeError, match="latched"):
                port.command_joints(q0)
            robot.disconnect()  # e-stopped: no damping phase, nothing more sent
            emu.settle()
            assert len(emu.all_frames) == frames_after_estop
        finally:
            robot.disconnect()


def test_bad_target_holds_instead_of_sending(channel):
    cfg = _config("arx5", {"interface": channel, "can_backend": "virtual", "motor_profile": "L5"})
    with MotorBusEmulator(channel, _motors("L5")) as emu:
        robot = make_robot(cfg, shadow=False)
        robot.connect()
        try:
            port = robot.open_motion()
            emu.settle()
            n = len(emu.motion_frames)
            bad = np.full(7, 0.1)
            bad[3] = np.nan
            with pytest.raises(VlaEdgeError, match="finite"):
                port.command_joints(bad)
            emu.settle()
            assert all(abs(f.pos) < 0.01 for f in emu.motion_frames[n:])  # hold at the measured 0, not 0.1
        finally:
            robot.disconnect()


@pytest.mark.parametrize("faulty_id", [2, 6])  # one EC, one DM motor of an X5
def test_motor_fault_refuses_motion_and_enables_nothing(channel, faulty_id):
    cfg = _config("arx5", {"interface": channel, "can_backend": "virtual"})
    with MotorBusEmulator(channel, _motors("X5")) as emu:
        emu.motors[faulty_id].fault = 8
        robot = make_robot(cfg, shadow=False)
        robot.connect()
        try:
            assert list(robot.read_state().status["faults"].values()) == [8]
            with pytest.raises(MotorFaultError, match=f"{channel}:{faulty_id}"):
                robot.open_motion()
            emu.settle()
            assert not any(m.enabled for m in emu.motors.values())
            # Only the EC read probes went out: no position target (kp 0), no torque, damping only.
            assert emu.motion_frames and all(f.kp == 0 and abs(f.tor) < 0.02 for f in emu.motion_frames)
            assert {f.motor_id for f in emu.motion_frames} == {1, 2, 4}
        finally:
            robot.disconnect()


def test_missing_can_interface_is_a_clear_error():
    cfg = _config("arx5", {"interface": "vlaedge_nocan0"})
    robot = make_robot(cfg, shadow=True)
    with pytest.raises(CanBusError, match="cannot open CAN interface 'vlaedge_nocan0'"):
        robot.connect()


def test_bimanual_maps_14_dofs_to_two_buses():
    rng = np.random.default_rng()
    left, right = f"arxl_{uuid.uuid4().hex[:6]}", f"arxr_{uuid.uuid4().hex[:6]}"
    cfg = _config("arx5-bimanual", {"left_interface": left, "right_interface": right, "can_backend": "virtual",
                                    "motor_profile": "L5"})
    ql, qr = _random_pose(rng, cfg, slice(0, 7)), _random_pose(rng, cfg, slice(7, 14))
    with MotorBusEmulator(left, _motors("L5"), _initial(ql)) as emu_l, \
            MotorBusEmulator(right, _motors("L5"), _initial(qr)) as emu_r:
        robot = make_robot(cfg, shadow=False)
        robot.connect()
        try:
            assert robot.capabilities.dof == 14 and robot.capabilities.arms == 2
            state = robot.read_state()
            np.testing.assert_allclose(state.q[:6], ql[:6], atol=POS_STEP)
            np.testing.assert_allclose(state.q[7:13], qr[:6], atol=POS_STEP)
            port = robot.open_motion()
            target = np.concatenate([ql, qr]) + 0.05
            port.command_joints(target)
            emu_l.settle()
            emu_r.settle()
            for emu, part in ((emu_l, target[:7]), (emu_r, target[7:])):
                last = {f.motor_id: f.pos for f in emu.motion_frames}
                expected = [*part[:6], gripper_width_to_motor(part[6])]
                np.testing.assert_allclose([last[i] for i in IDS], expected, atol=POS_STEP)
        finally:
            robot.disconnect()


@pytest.mark.parametrize(
    "connection, key",
    [({"interface": "can0", "bitrate": 1}, "connection.bitrate"), ({}, "connection.interface"),
     ({"interface": "can0", "motor_profile": "Z9"}, "connection.motor_profile"),
     ({"interface": "can0", "kp": [1, 2]}, "connection.kp")],
)
def test_connection_errors_name_the_key(connection, key):
    cfg = _config("arx5", connection)
    with pytest.raises(ConfigError, match=key):
        make_robot(cfg, shadow=True)


def test_safety_filter_streams_limited_targets_onto_the_wire(channel):
    """Filter -> driver -> CAN frames: per-tick change of every commanded motor position stays
    within the operating velocity limit (+ one position step of quantization)."""
    from vla_edge.robots.safety.filter import SafetyFilter

    from vla_edge.robots.kinematics import RobotKinematics

    rng = np.random.default_rng()
    cfg = _config("arx5", {"interface": channel, "can_backend": "virtual", "motor_profile": "L5"})
    kin, wmin, wmax = RobotKinematics(cfg.kinematics), np.array(cfg.workspace.min), np.array(cfg.workspace.max)

    def inside(q):  # start and target inside the workspace box, or the filter rightly holds
        tcp = kin.tcp_positions(q)[0, 0]
        return bool(np.all(tcp > wmin + 0.05) and np.all(tcp < wmax - 0.05))

    nominal = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.04])
    q0 = next(q for q in (nominal + np.append(rng.uniform(-0.2, 0.2, 6), 0.0) for _ in range(1000)) if inside(q))
    with MotorBusEmulator(channel, _motors("L5"), _initial(q0)) as emu:
        robot = make_robot(cfg, shadow=False)
        robot.connect()
        try:
            filt = SafetyFilter(robot, cfg, shadow=False)
            target = next(t for t in (q0 + np.append(rng.uniform(-0.3, 0.3, 6), 0.0) for _ in range(1000)) if inside(t))
            emu.settle()
            n = len(emu.motion_frames)
            for _ in range(40):
                res = filt.step(target, time.monotonic(), robot.read_state())
                assert res.state == "running", res.interventions
                time.sleep(cfg.control_period_s)
            emu.settle()
            dt, v_lim = cfg.control_period_s, np.array(cfg.limits.velocity)
            per_motor: dict[int, list[float]] = {}
            for f in emu.motion_frames[n:]:
                if f.kp > 0:
                    per_motor.setdefault(f.motor_id, []).append(f.pos)
            for k, mid in enumerate(IDS[:6]):
                steps = np.abs(np.diff(per_motor[mid]))
                assert np.all(steps <= v_lim[k] * dt + 2 * POS_STEP), (mid, steps.max())
            # The stream really moved the arm toward the target. How far depends on the pose: under the
            # 0.2 m/s TCP cap, 40 ticks of an outstretched arm can be as little as ~0.045 rad on the
            # leading joint, so demand 0.02 rad (50x the position quantum) in the right direction.
            lead = int(np.argmax(np.abs(target[:6] - q0[:6])))
            travelled = per_motor[IDS[lead]][-1] - per_motor[IDS[lead]][0]
            assert np.sign(travelled) == np.sign(target[lead] - q0[lead]) and abs(travelled) > 0.02, (lead, travelled)
        finally:
            robot.disconnect()
