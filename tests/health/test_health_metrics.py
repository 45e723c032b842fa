"""RunMetrics against a direct numpy reference on fresh random inputs (ARX5: 6 joints + gripper)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla_edge.health.metrics import RunMetrics
from vla_edge.robots.kinematics import RobotKinematics
from vla_edge.robots.registry import load_registered_config
from vla_edge.run.cameras import FrameStats


class FakeCamera:
    def __init__(self):
        self.stats = FrameStats()


def _feed(m: RunMetrics, rng, n: int):
    """Random smooth commands with a stop/resume jump, gaps in the target, a gripper that opens and
    closes, health states, chunks and events; returns what was fed."""
    q = np.array([0.1, 0.5, 0.6, -0.2, 0.1, 0.0, 0.02])
    fed = []
    for i in range(n):
        q = q + np.r_[rng.normal(0, 0.004, 6), 0.0]
        q[6] = 0.080 if (i // 9) % 2 else 0.004  # gripper open/closed, switching every 9 ticks
        if i == 13:
            q[6] = 0.042  # inside the 40-60 % band: not a switch
        if i == 26:
            q[:6] += 0.3  # restart from the measured position after a stop: a step, not a motion
        target = None if i in (20, 21) else q.copy()
        cmd = q.copy() + rng.normal(0, 1e-4, 7)
        state = "stopped" if i == 25 else "running"
        health = "nominal" if i < 12 else "throttled" if i < 24 else "critical" if i < 30 else "nominal"
        m.tick(target, cmd, True, state != "running", (), 0.1, health, state)
        fed.append((target, cmd, state, health))
        if i % 7 == 3:
            m.chunk(True, float(rng.uniform(20, 90)), 5.0, 0)
        if i in (5, 31):
            m.event("control_watchdog")
    return fed


def test_metrics_match_a_direct_reference(tmp_path):
    cfg = load_registered_config("arx5")
    cams = {"base": FakeCamera()}
    cams["base"].stats.frames, cams["base"].stats.dropped = 10, 1  # before the run (warm-up): not counted
    rng = np.random.default_rng(1234)
    m = RunMetrics.for_robot(cfg, cams, tmp_path / "metrics.jsonl", window_s=0.1)  # 100 Hz: 10 ticks
    assert m.window_ticks == 10 and m.period == pytest.approx(0.01)
    latencies = []
    orig_chunk = m.chunk

    def chunk(*a):
        latencies.append(a[1])
        orig_chunk(*a)

    m.chunk = chunk
    fed = _feed(m, rng, 35)
    cams["base"].stats.frames += 40
    cams["base"].stats.dropped += 2
    summary = m.summary()
    met = summary["metrics"]

    arm = slice(0, 6)
    deltas = [np.linalg.norm(fed[i][0][arm] - fed[i - 1][0][arm]) for i in range(1, 35)
              if fed[i][0] is not None and fed[i - 1][0] is not None]
    moving = [i for i in range(1, 35) if fed[i - 1][2] in ("running", "braking")]
    joint = [np.max(np.abs(fed[i][1][arm] - fed[i - 1][1][arm])) / 0.01 for i in moving]
    kin = RobotKinematics(cfg.kinematics)
    eef = [np.linalg.norm(kin.tcp_positions(fed[i][1])[0, 0] - kin.tcp_positions(fed[i - 1][1])[0, 0]) / 0.01
           for i in moving]
    assert 25 not in [i - 1 for i in moving]  # the post-stop jump is excluded ...
    assert max(joint) < 0.3 / 0.01  # ... so the 0.3 rad step never shows up as 30 rad/s
    assert met["action_delta_l2"]["mean"] == pytest.approx(np.mean(deltas), rel=1e-12)
    assert met["action_delta_l2"]["p95"] == pytest.approx(np.percentile(deltas, 95), rel=1e-12)
    assert met["action_delta_l2"]["max"] == pytest.approx(max(deltas), rel=1e-12)
    assert met["joint_velocity_max"] == pytest.approx(max(joint), rel=1e-12)
    assert met["eef_velocity"]["p50"] == pytest.approx(np.percentile(eef, 50), rel=1e-9)
    assert met["eef_velocity"]["max"] == pytest.approx(max(eef), rel=1e-9)
    assert met["policy_latency_ms_p50"] == pytest.approx(np.percentile(latencies, 50))
    assert met["policy_latency_ms_p95"] == pytest.approx(np.percentile(latencies, 95))
    # Gripper: closed 0-8, open 9-17 (13 is mid-band, no switch), closed 18-26, open 27-34: 3 switches.
    assert met["gripper_command_switch_rate"] == pytest.approx(3 / 0.35)
    assert met["camera_frame_drop_rate"] == pytest.approx(2 / 42)
    assert met["controller_watchdog_reset_count"] == 2
    assert met["health_state_s"] == pytest.approx({"nominal": 0.17, "throttled": 0.12, "critical": 0.06})
    assert met["throttle_events"] == 2  # into throttled, into critical (back to nominal is not one)
    assert met["duration_s"] == pytest.approx(0.35) and met["windows"] == 4
    assert summary["ticks"] == 35 and summary["chunks"]["received"] == len(latencies)  # LoopStats keys kept

    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [w["window"] for w in lines] == [0, 1, 2, 3] and [w["ticks"] for w in lines] == [10, 10, 10, 5]
    assert sum(w["controller_watchdog_reset_count"] for w in lines) == 2
    assert lines[1]["health_state_s"] == pytest.approx({"nominal": 0.02, "throttled": 0.08})
    assert lines[1]["throttle_events"] == 1 and lines[2]["throttle_events"] == 1
    assert max(w["joint_velocity_max"] for w in lines) == pytest.approx(max(joint), rel=1e-6)  # 7 decimals in JSON


def test_robot_without_gripper_and_no_samples_report_none():
    cfg = load_registered_config("ur3")
    m = RunMetrics.for_robot(cfg)
    met = m.summary()["metrics"]
    assert met["gripper_command_switch_rate"] is None  # the UR3 config has no gripper DOF
    assert met["policy_latency_ms_p50"] is None and met["joint_velocity_max"] is None
    assert met["camera_frame_drop_rate"] is None and met["windows"] == 0
