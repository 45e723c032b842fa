"""UR3 driver against the real ur_rtde client and the loopback controller emulator.

Every assertion about motion is made on what the emulator received on the wire.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rtde_receive")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ur_emulator import EmulatorHandle, free_loopback_host  # noqa: E402
from ur_emulator.testing import ur3_config  # noqa: E402

from vla_edge.errors import ConfigError, VlaEdgeError  # noqa: E402
from vla_edge.robots.kinematics.forward import RobotKinematics  # noqa: E402
from vla_edge.robots.registry import create_robot  # noqa: E402
from vla_edge.robots.ur3.connection import URConnectionError  # noqa: E402
from vla_edge.robots.ur3.driver import UR3Robot  # noqa: E402
from vla_edge.robots.ur3.motion import MotionLinkLost  # noqa: E402


def _random_q0(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0]) + rng.uniform(-0.4, 0.4, 6))


def _index(log: list[dict], name: str, last: bool = False) -> int:
    idx = [i for i, e in enumerate(log) if e["name"] == name]
    assert idx, f"{name} not in emulator log: {[e['name'] for e in log]}"
    return idx[-1] if last else idx[0]


def _at_most_the_in_flight_command(motion_after_drop: list[dict]) -> None:
    """Known limit (docs/ur3.md): ur_rtde retries a send that failed on the dropped socket over a
    session it re-establishes inside that same servoJ call, so the one target being commanded at
    that instant may still arrive. Never a second one: the next call sees the changed session and
    the driver kills the worker."""
    assert len(motion_after_drop) <= 1, [(e["name"], e["session"]) for e in motion_after_drop]


def _stream(port, q_start: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """n small random steps (well inside the UR3 limits), commanded; returns what was commanded."""
    rng = np.random.default_rng(seed)
    q = q_start.copy()
    sent = []
    for _ in range(n):
        q = q + rng.uniform(-0.004, 0.004, 6)
        port.command_joints(q)
        sent.append(q.copy())
    return sent


def test_receive_stream_matches_emulator():
    q0 = _random_q0(seed=int(time.time()) % 10_000)
    with EmulatorHandle(q0=q0) as emu:
        cfg = ur3_config(emu.host)
        with UR3Robot(cfg, shadow=True) as robot:
            state = robot.read_state()
            # Doubles travel unchanged through RTDE: exact equality with what the emulator holds.
            np.testing.assert_array_equal(state.q, np.array(emu.state()["q"]))
            np.testing.assert_allclose(state.q, q0, rtol=0, atol=0)
            np.testing.assert_array_equal(state.qd, np.zeros(6))
            # TCP pose: the emulator's own FK against the project's independent FK (same DH table).
            t = RobotKinematics(cfg.kinematics).tcp_poses(state.q)[0][0]
            np.testing.assert_allclose(state.tcp_pose[:3], t[:3, 3], atol=1e-9)
            angle = np.linalg.norm(state.tcp_pose[3:])
            axis = state.tcp_pose[3:] / angle
            k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
            rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
            np.testing.assert_allclose(rot, t[:3, :3], atol=1e-6)
            assert state.status["robot_mode"] == 7 and state.status["safety_mode"] == 1
            assert state.status["runtime_state"] == 1 and state.status["protective_stop"] is False
            emu.protective_stop()
            time.sleep(0.05)
            state = robot.read_state()
            assert state.status["protective_stop"] is True and state.status["safety_mode"] == 3


def test_shadow_run_sends_zero_motion_commands_on_the_wire():
    with EmulatorHandle() as emu:
        cfg = ur3_config(emu.host)
        robot = create_robot(cfg, shadow=True)
        assert isinstance(robot, UR3Robot)
        with robot:
            for _ in range(60):  # ~0.5 s of a shadow loop at the control rate
                state = robot.read_state()
                assert np.all(np.isfinite(state.q))
                time.sleep(cfg.control_period_s)
            with pytest.raises(VlaEdgeError, match="shadow"):
                robot.open_motion()
            assert not robot.has_control_interface
        log = emu.log()
        accepted = emu.state()["accepted"]
    assert [e for e in log if e["kind"] == "motion"] == []
    assert [e for e in log if e["source"] in ("rtde", "script", "dashboard")] == []
    # No input recipe was ever set up (no register could carry a command), and neither the
    # dashboard nor the script port was connected (the control interface needs both).
    assert accepted["dashboard"] == 0 and accepted["script"] == 0 and accepted["rtde"] >= 1


def test_live_servoj_targets_arrive_exactly_and_stop_on_exit():
    with EmulatorHandle(q0=_random_q0(7)) as emu:
        cfg = ur3_config(emu.host, lookahead_time=0.05, gain=500)
        with UR3Robot(cfg, shadow=False) as robot:
            port = robot.open_motion()
            start = robot.read_state().q
            t0 = time.monotonic()
            sent = _stream(port, start, 40, seed=11)
            elapsed = time.monotonic() - t0
            time.sleep(0.3)  # let the first-order servo settle on the last target
            settled = robot.read_state().q
        log = emu.log()
    servo = [e for e in log if e["name"] == "servoJ"]
    assert len(servo) == len(sent)
    for entry, q in zip(servo, sent):
        np.testing.assert_array_equal(np.array(entry["args"]["q"]), q)
        assert entry["args"]["time"] == pytest.approx(1 / 125)
        assert entry["args"]["lookahead_time"] == 0.05 and entry["args"]["gain"] == 500
    # controller-timed pacing: 40 commands cannot go out faster than 39 periods
    assert elapsed >= 39 * cfg.control_period_s * 0.9
    np.testing.assert_allclose(settled, sent[-1], atol=2e-3)
    # every exit path ends with a controlled stop after the last motion command
    last_motion = _index(log, "servoJ", last=True)
    assert last_motion < _index(log, "servoStop") < _index(log, "stopJ") < _index(log, "stopScript")


def test_exception_in_run_stops_the_arm():
    handler_before = signal.getsignal(signal.SIGINT)
    with EmulatorHandle() as emu:
        cfg = ur3_config(emu.host)
        with pytest.raises(ZeroDivisionError):
            with UR3Robot(cfg, shadow=False) as robot:
                port = robot.open_motion()
                assert signal.getsignal(signal.SIGINT) is not handler_before  # the driver's stop handler
                _stream(port, robot.read_state().q, 10, seed=3)
                1 / 0
        log = emu.log()
    assert _index(log, "servoJ", last=True) < _index(log, "servoStop")
    assert signal.getsignal(signal.SIGINT) is handler_before  # restored on disconnect


@pytest.mark.parametrize("shadow", [True, False])
def test_unreachable_controller_is_a_clear_error_before_anything_moves(shadow):
    host = free_loopback_host()  # nothing listens there
    robot = UR3Robot(ur3_config(host, connect_timeout_s=0.3), shadow=shadow)
    t0 = time.monotonic()
    with pytest.raises(URConnectionError, match=re.escape(host) + r":30004 \(RTDE\) is unreachable.*connection\.host"):
        robot.connect()
    assert time.monotonic() - t0 < 2.0
    with pytest.raises(VlaEdgeError):
        robot.open_motion()  # shadow: refused; live: refused because not connected


def test_controller_drop_never_resumes_motion_on_its_own():
    with EmulatorHandle() as emu:
        cfg = ur3_config(emu.host, reconnect_attempts=5, reconnect_backoff_s=0.05)
        with UR3Robot(cfg, shadow=False) as robot:
            port = robot.open_motion()
            q = _stream(port, robot.read_state().q, 15, seed=5)[-1]
            emu.drop_connections()
            with pytest.raises(MotionLinkLost):
                for _ in range(50):  # the loop keeps trying; the port must refuse within a few ticks
                    port.command_joints(q)
                    time.sleep(cfg.control_period_s)
            deadline = time.monotonic() + 3.0
            while (state := robot.read_state()).status["link_epoch"] < 1 and time.monotonic() < deadline:
                time.sleep(0.01)  # the receive side may notice the EOF a few ms after the control side
            assert state.status["link_epoch"] >= 1  # ... the receive link came back (backoff) ...
            assert state.status["motion_open"] is False
            with pytest.raises(MotionLinkLost):
                port.command_joints(q)  # ... but the old motion port stays dead
            time.sleep(0.3)
            log_before_reopen = emu.log()
            port2 = robot.open_motion()  # only an explicit new open_motion moves again
            port2.command_joints(q)
        log = emu.log()
    drop = _index(log_before_reopen, "connections_dropped")
    _at_most_the_in_flight_command([e for e in log_before_reopen[drop:] if e["kind"] == "motion"])
    assert [e for e in log[len(log_before_reopen):] if e["name"] == "servoJ"] != []


def test_lost_controller_fails_reads_with_a_clear_error():
    with EmulatorHandle() as emu:
        robot = UR3Robot(ur3_config(emu.host, reconnect_attempts=1, reconnect_backoff_s=0.05), shadow=True)
        robot.connect()
        emu.set_listening(False)
        emu.drop_connections()
        time.sleep(0.1)
        with pytest.raises(URConnectionError, match="receive connection lost"):
            robot.read_state()
        robot.disconnect()


def test_emergency_stop_triggers_protective_stop_and_kills_the_port():
    with EmulatorHandle() as emu:
        with UR3Robot(ur3_config(emu.host), shadow=False) as robot:
            port = robot.open_motion()
            q = _stream(port, robot.read_state().q, 5, seed=9)[-1]
            port.emergency_stop()
            time.sleep(0.05)
            assert robot.read_state().status["protective_stop"] is True
            with pytest.raises(MotionLinkLost):
                port.command_joints(q)
        log = emu.log()
    assert _index(log, "servoJ", last=True) < _index(log, "triggerProtectiveStop")
    assert [e for e in log[_index(log, "triggerProtectiveStop"):] if e["kind"] == "motion"] == []


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("lookahead_time", 0.01, "connection.lookahead_time"),
        ("gain", 5000, "connection.gain"),
        ("rtde_frequency", 200, "connection.rtde_frequency"),
        ("servo_speed", -1, "connection.servo_speed"),
        ("bogus", 1, "connection.bogus"),
    ],
)
def test_bad_connection_settings_name_the_field(key, value, match):
    with pytest.raises(ConfigError, match=match):
        UR3Robot(ur3_config("127.0.0.1", **{key: value}), shadow=True)


def test_missing_host_is_a_config_error():
    cfg = ur3_config("127.0.0.1").model_copy(update={"connection": {}})
    with pytest.raises(ConfigError, match="connection.host"):
        UR3Robot(cfg, shadow=True)


@pytest.mark.parametrize(
    ("series", "rtde_frequency", "expected_stream_hz"),
    [("cb3", None, 125.0), ("e", None, 500.0), ("e", 125, 125.0)],
)
def test_stream_rate_follows_the_controller_series(series, rtde_frequency, expected_stream_hz):
    """rtde_frequency null = the controller's own rate (ur_rtde reads the version: 3.x -> 125 Hz,
    5.x -> 500 Hz); the control interface always runs at control_rate_hz (the servoJ period)."""
    with EmulatorHandle(series=series) as emu:
        cfg = ur3_config(emu.host, rtde_frequency=rtde_frequency)
        with UR3Robot(cfg, shadow=False) as robot:
            t0 = robot.read_state().status["controller_time"]
            time.sleep(0.2)
            t1 = robot.read_state().status["controller_time"]
            robot.open_motion()
        frequencies = emu.state()["output_frequencies"]
    assert t1 > t0
    assert frequencies == [expected_stream_hz, cfg.control_rate_hz]


def test_control_socket_drop_alone_kills_the_port_before_any_more_motion():
    """Only the control interface's RTDE session drops (the receive stream stays up). ur_rtde
    would reconnect it on its own; the port must die and nothing more may move the arm."""
    with EmulatorHandle() as emu:
        with UR3Robot(ur3_config(emu.host), shadow=False) as robot:
            port = robot.open_motion()
            q = _stream(port, robot.read_state().q, 15, seed=21)[-1]
            emu.drop_connections(only_control=True)
            with pytest.raises(MotionLinkLost):
                for _ in range(100):
                    port.command_joints(q)
            assert robot.read_state().status["motion_open"] is False
            assert not robot.has_control_interface  # worker killed: nothing left that could send
            time.sleep(0.5)  # anything ur_rtde might still do on its own would show up now
        log = emu.log()
    drop = _index(log, "control_connection_dropped")
    _at_most_the_in_flight_command([e for e in log[drop:] if e["kind"] == "motion"])


def test_rtde_watchdog_stops_the_script_when_commands_stop_and_the_port_dies():
    with EmulatorHandle() as emu:
        cfg = ur3_config(emu.host, watchdog_min_hz=20.0)
        with UR3Robot(cfg, shadow=False) as robot:
            port = robot.open_motion()
            q = _stream(port, robot.read_state().q, 10, seed=13)[-1]
            time.sleep(0.3)  # the loop stalls for 6 watchdog periods
            assert robot.read_state().status["runtime_state"] == 1  # controller stopped the script
            with pytest.raises(MotionLinkLost, match="control script not running"):
                port.command_joints(q)
        log = emu.log()
    assert log[_index(log, "setWatchdog")]["args"]["value"] == 20.0
    assert _index(log, "setWatchdog") < _index(log, "servoJ")
    stopped = _index(log, "program_stopped")
    assert "watchdog" in log[stopped]["args"]["reason"]
    assert [e for e in log[stopped:] if e["kind"] == "motion"] == []


def test_second_controller_client_is_refused_and_the_first_keeps_streaming():
    """Input registers belong to one RTDE client (the controller answers IN_USE): a second live
    driver gets a clear error, and the first one's stream is not disturbed."""
    with EmulatorHandle() as emu:
        cfg = ur3_config(emu.host)
        with UR3Robot(cfg, shadow=False) as first, UR3Robot(cfg, shadow=False) as second:
            port = first.open_motion()
            q = _stream(port, first.read_state().q, 5, seed=17)[-1]
            with pytest.raises(URConnectionError, match="control interface setup failed.*already in use"):
                second.open_motion()
            sent = _stream(port, q, 5, seed=18)
        servo = [e for e in emu.log() if e["name"] == "servoJ"]
    assert len(servo) == 10 and len({e["session"] for e in servo}) == 1
    np.testing.assert_array_equal(np.array(servo[-1]["args"]["q"]), sent[-1])


def test_e_series_streams_servoj_at_500_hz():
    with EmulatorHandle(series="e") as emu:
        cfg = ur3_config(emu.host, control_rate_hz=500.0)
        with UR3Robot(cfg, shadow=False) as robot:
            port = robot.open_motion()
            t0 = time.monotonic()
            sent = _stream(port, robot.read_state().q, 200, seed=23)
            elapsed = time.monotonic() - t0
        log = emu.log()
        frequencies = emu.state()["output_frequencies"]
    servo = [e for e in log if e["name"] == "servoJ"]
    assert frequencies == [500.0, 500.0]
    assert len(servo) == 200 and all(e["args"]["time"] == pytest.approx(0.002) for e in servo)
    np.testing.assert_array_equal(np.array(servo[-1]["args"]["q"]), sent[-1])
    assert elapsed >= 199 * 0.002 * 0.9  # paced by the controller-timed period, not faster
