"""RunLoop with a recording fake robot and a scripted policy, on simulated time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_edge.health.limits import OperatingLimits
from vla_edge.robots.safety import SafetyFilter
from vla_edge.run.cameras import build_sources, open_sources
from vla_edge.run.clock import ManualClock
from vla_edge.run.loop import LoopSettings, RunLoop
from vla_edge.run.mapping import JointMapping
from vla_edge.run.rundir import RunDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_fakes import FakePolicy, FakeRobot, ur3_config  # noqa: E402

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
# The policy's order differs from the robot's and it has a gripper the robot lacks.
POLICY_ACTIONS = ("wrist_3", "gripper", "shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2")


def make_loop(tmp_path, shadow: bool, latency_s=0.1, duration_s=2.0, health=None, seed=0, policy=None):
    cfg = ur3_config()
    clock = ManualClock()
    robot = FakeRobot(cfg, clock, shadow)
    robot.connect()
    safety = SafetyFilter(robot, cfg, shadow=shadow, clock=clock.now)
    mapping = JointMapping.build(POLICY_ACTIONS, POLICY_ACTIONS, JOINTS)
    policy = policy or FakePolicy(POLICY_ACTIONS, latency_s=latency_s, seed=seed)
    policy.state_index = {n: i for i, n in enumerate(POLICY_ACTIONS)}
    cams = build_sources({"base_0_rgb": "base", "left_wrist_0_rgb": "wrist"}, ("base",), {}, robot, clock.now)
    open_sources(cams)
    settings = LoopSettings(duration_s=duration_s, prompt="pick up the cube", replan_s=0.25, inference_timeout_s=1.0)
    rundir = RunDirectory(tmp_path / "run")
    loop = RunLoop(robot, safety, policy.infer, mapping, cams, clock, settings, rundir, health=health)
    return loop, robot, policy, rundir


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shadow_run_never_opens_motion_and_logs_every_tick(tmp_path):
    loop, robot, policy, rundir = make_loop(tmp_path, shadow=True, seed=3)
    outcome = loop.run()
    rundir.close()
    assert outcome.reason == "duration"
    assert robot.motion_ports == 0 and robot.commands == [] and robot.stops == 0
    ticks = read_jsonl(rundir.path / "ticks.jsonl")
    assert len(ticks) == round(2.0 * 125)
    assert not any(t["sent"] for t in ticks)
    # The filter ran: most ticks have a would-be command and a target from the policy.
    assert sum(t["filtered"] is not None and t["commanded"] is not None for t in ticks) > 0.8 * len(ticks)
    assert len(policy.calls) >= 6
    summary = json.loads((rundir.path / "summary.json").read_text())
    assert summary["shadow"] is True and summary["commands_sent"] == 0 and summary["ticks"] == len(ticks)


def test_live_run_sends_exactly_the_filtered_commands_in_robot_order(tmp_path):
    loop, robot, policy, rundir = make_loop(tmp_path, shadow=False, seed=5)
    outcome = loop.run()
    rundir.close()
    assert outcome.reason == "duration"
    assert robot.motion_ports == 1
    ticks = read_jsonl(rundir.path / "ticks.jsonl")
    sent = [np.array(t["filtered"]) for t in ticks if t["sent"]]
    assert len(sent) == len(robot.commands) > 200
    for logged, wire in zip(sent, robot.commands):
        np.testing.assert_allclose(logged, wire, atol=1e-6)  # JSON rounds to 7 decimals
    # Commanded targets are the policy's columns reordered to the robot's joints (no gripper).
    first = policy.chunks[0].actions.astype(float)
    cols = [POLICY_ACTIONS.index(j) for j in JOINTS]
    expected_first = first[:, cols]
    commanded = np.array([t["commanded"] for t in ticks if t["commanded"] is not None][0])
    assert commanded.shape == (6,)
    lo, hi = expected_first.min(axis=0) - 1e-6, expected_first.max(axis=0) + 1e-6
    assert np.all((commanded >= lo) & (commanded <= hi))
    assert robot.stops >= 1  # controlled stop at the end


def test_latency_compensation_drops_past_rows(tmp_path):
    loop, robot, policy, rundir = make_loop(tmp_path, shadow=True, latency_s=0.2, seed=1)
    outcome = loop.run()
    rundir.close()
    # 0.2 s latency at 0.05 s per row: rows 0..3 are entirely in the past, row 4 is the anchor.
    assert outcome.summary["chunks"]["rows_dropped_as_past"] == 4 * outcome.summary["chunks"]["received"]
    assert outcome.summary["chunk_age_at_arrival_ms"]["p50"] == pytest.approx(200.0, abs=1e-6)


def test_inference_stall_triggers_watchdog_hold_and_recovery_resumes(tmp_path):
    class StallingPolicy(FakePolicy):
        def infer(self, obs):
            chunk = super().infer(obs)
            if len(self.calls) == 3:  # the third inference takes 1.5 s (> 1 s timeout)
                chunk.latency_ms["total"] = 1500.0
            return chunk

    policy = StallingPolicy(POLICY_ACTIONS, latency_s=0.1, seed=2)
    loop, robot, _, rundir = make_loop(tmp_path, shadow=False, duration_s=4.0, policy=policy)
    outcome = loop.run()
    rundir.close()
    events = [e["event"] for e in read_jsonl(rundir.path / "events.jsonl")]
    assert "inference_watchdog" in events and "inference_recovered" in events and "resume" in events
    ticks = read_jsonl(rundir.path / "ticks.jsonl")
    held = [t for t in ticks if t["commanded"] is None and t["i"] > 100]
    assert held and all(t["filter"] in ("braking", "stopped") for t in held)
    assert outcome.reason == "duration" and ticks[-1]["filter"] == "running"


def test_exception_in_robot_read_stops_the_filter_and_reraises(tmp_path):
    loop, robot, policy, rundir = make_loop(tmp_path, shadow=False, seed=4)
    calls = {"n": 0}
    real = robot.read_state

    def failing():
        calls["n"] += 1
        if calls["n"] > 150:
            raise RuntimeError("link lost")
        return real()

    robot.read_state = failing
    with pytest.raises(RuntimeError, match="link lost"):
        loop.run()
    rundir.close()
    assert robot.stops >= 1
    summary = json.loads((rundir.path / "summary.json").read_text())
    assert summary["end_reason"] == "error" and "link lost" in summary["detail"]


def test_keyboard_interrupt_is_a_controlled_stop(tmp_path):
    loop, robot, policy, rundir = make_loop(tmp_path, shadow=False, seed=6)
    n = {"ticks": 0}
    real_sleep = loop.clock.sleep_until

    def sleep_until(t):
        n["ticks"] += 1
        if n["ticks"] == 120:
            raise KeyboardInterrupt
        real_sleep(t)

    loop.clock.sleep_until = sleep_until
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    rundir.close()
    assert robot.stops >= 1
    assert json.loads((rundir.path / "summary.json").read_text())["end_reason"] == "interrupted"


class ScriptedHealth:
    """Nominal, then throttled (half speed, half inference rate), then critical."""

    def __init__(self, clock, t0):
        self.clock, self.t0 = clock, t0

    def current_limits(self) -> OperatingLimits:
        t = self.clock.now() - self.t0
        if t < 1.0:
            return OperatingLimits("nominal", 1.0, 1.0, True, "")
        if t < 2.0:
            return OperatingLimits("throttled", 0.5, 0.5, True, "test: hot")
        return OperatingLimits("critical", 0.5, 0.5, False, "test: too hot")


def test_health_throttles_then_critical_finishes_segment_and_stops(tmp_path):
    loop, robot, policy, rundir = make_loop(tmp_path, shadow=False, duration_s=5.0, seed=7)
    loop.health = ScriptedHealth(loop.clock, loop.clock.now())
    outcome = loop.run()
    rundir.close()
    assert outcome.reason == "health_critical"
    assert outcome.summary["duration_s"] < 3.0  # ended after the last chunk ran out, not at 5 s
    events = read_jsonl(rundir.path / "events.jsonl")
    states = [e["state"] for e in events if e["event"] == "health"]
    assert states == ["throttled", "critical"]
    ticks = read_jsonl(rundir.path / "ticks.jsonl")
    assert {t["velocity_scale"] for t in ticks if t["health"] == "throttled"} == {0.5}
    t_crit = min(t["t"] for t in ticks if t["health"] == "critical")
    chunk_ids_after = {t["chunk"] for t in ticks if t["t"] > t_crit}
    chunk_at_crit = [t["chunk"] for t in ticks if t["t"] <= t_crit][-1]
    assert chunk_ids_after <= {chunk_at_crit}  # no new chunk accepted once critical
    assert ticks[-1]["filter"] == "stopped" and robot.stops >= 1


def test_threaded_inference_on_the_real_clock_and_a_failing_policy_stops_the_arm(tmp_path):
    """The real-time path: inference in its own thread; its exception ends the run with a stop."""
    import time

    from vla_edge.errors import VlaEdgeError
    from vla_edge.run.clock import MonotonicClock

    class SlowThenBroken(FakePolicy):
        def infer(self, obs):
            time.sleep(0.03)
            if len(self.calls) >= 4:
                raise RuntimeError("accelerator lost")
            return super().infer(obs)

    cfg = ur3_config()
    clock = MonotonicClock()
    robot = FakeRobot(cfg, clock, shadow=False)
    safety = SafetyFilter(robot, cfg, shadow=False, clock=clock.now)
    policy = SlowThenBroken(POLICY_ACTIONS, latency_s=0.0, seed=9)
    policy.state_index = {n: i for i, n in enumerate(POLICY_ACTIONS)}
    mapping = JointMapping.build(POLICY_ACTIONS, POLICY_ACTIONS, JOINTS)
    cams = build_sources({"base_0_rgb": "base"}, ("base",), {}, robot, clock.now)
    settings = LoopSettings(duration_s=5.0, prompt="p", replan_s=0.1, inference_timeout_s=1.0)
    rundir = RunDirectory(tmp_path / "run")
    loop = RunLoop(robot, safety, policy.infer, mapping, cams, clock, settings, rundir)
    t0 = time.monotonic()
    with pytest.raises(VlaEdgeError, match="accelerator lost"):
        loop.run()
    rundir.close()
    assert time.monotonic() - t0 < 3.0
    assert len(robot.commands) > 0 and robot.stops >= 1
    summary = json.loads((rundir.path / "summary.json").read_text())
    assert summary["end_reason"] == "error" and summary["chunks"]["received"] >= 2


def test_control_watchdog_stops_the_arm_while_the_loop_is_stalled(tmp_path):
    """Real time: a read that hangs 0.6 s must not leave the arm streaming its last command; the
    watchdog thread stops it during the stall and the run ends as a safety stop."""
    import time

    from vla_edge.run.clock import MonotonicClock

    cfg = ur3_config()
    clock = MonotonicClock()
    robot = FakeRobot(cfg, clock, shadow=False)
    safety = SafetyFilter(robot, cfg, shadow=False, clock=clock.now)
    policy = FakePolicy(POLICY_ACTIONS, latency_s=0.0, seed=10)
    policy.state_index = {n: i for i, n in enumerate(POLICY_ACTIONS)}
    mapping = JointMapping.build(POLICY_ACTIONS, POLICY_ACTIONS, JOINTS)
    cams = build_sources({"base_0_rgb": "base"}, ("base",), {}, robot, clock.now)
    settings = LoopSettings(duration_s=5.0, prompt="p", replan_s=0.1, inference_timeout_s=1.0, control_timeout_s=0.15)
    rundir = RunDirectory(tmp_path / "run")
    loop = RunLoop(robot, safety, policy.infer, mapping, cams, clock, settings, rundir)
    real_read, calls, seen = robot.read_state, {"n": 0}, {}

    import threading

    def read_state():
        if threading.current_thread() is not threading.main_thread():
            return real_read()  # the inference thread's reads are not the control loop's
        calls["n"] += 1
        if calls["n"] == 60:
            time.sleep(0.6)
            seen["stops_during_stall"] = robot.stops
        return real_read()

    robot.read_state = read_state
    outcome = loop.run()
    rundir.close()
    assert seen["stops_during_stall"] >= 1  # stopped by the watchdog thread, not by the loop
    assert outcome.reason == "safety_stop" and "stalled" in outcome.detail
    assert outcome.summary["duration_s"] < 2.0
