"""Run-loop behaviour the health policy relies on, on simulated time with a recording fake robot:
giving up after `critical_wait_s`, and the inference worker pausing at rate 0 and resuming."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run"))
from run_fakes import FakePolicy, FakeRobot, ur3_config  # noqa: E402

from vla_edge.health.limits import OperatingLimits  # noqa: E402
from vla_edge.robots.safety import SafetyFilter  # noqa: E402
from vla_edge.run.clock import ManualClock, MonotonicClock  # noqa: E402
from vla_edge.run.inference import InlineInference, ThreadedInference  # noqa: E402
from vla_edge.run.loop import LoopSettings, RunLoop  # noqa: E402
from vla_edge.run.mapping import JointMapping  # noqa: E402
from vla_edge.run.rundir import RunDirectory  # noqa: E402
from vla_edge.types import Observation  # noqa: E402

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")


class CriticalFrom:
    def __init__(self, clock, t_critical: float):
        self.clock, self.t0, self.t_critical = clock, clock.now(), t_critical

    def current_limits(self) -> OperatingLimits:
        if self.clock.now() - self.t0 < self.t_critical:
            return OperatingLimits("nominal", 1.0, 1.0, True, "")
        return OperatingLimits("critical", 0.0, 0.25, False, "test: 97 C")


def test_critical_without_recovery_ends_the_run_after_the_wait(tmp_path):
    cfg = ur3_config()
    clock = ManualClock()
    robot = FakeRobot(cfg, clock, shadow=False, cameras=())
    robot.connect()
    safety = SafetyFilter(robot, cfg, shadow=False, clock=clock.now)
    policy = FakePolicy(JOINTS, latency_s=0.05, seed=5)
    policy.state_index = {n: i for i, n in enumerate(JOINTS)}
    settings = LoopSettings(duration_s=10.0, prompt="p", replan_s=0.25, inference_timeout_s=1.0, critical_wait_s=0.5)
    rundir = RunDirectory(tmp_path / "run")
    loop = RunLoop(robot, safety, policy.infer, JointMapping.build(JOINTS, JOINTS, JOINTS), {}, clock, settings,
                   rundir, health=CriticalFrom(clock, 1.0))
    outcome = loop.run()
    rundir.close()
    events = [json.loads(x) for x in (rundir.path / "events.jsonl").read_text().splitlines()]
    hold = next(e for e in events if e["event"] == "health_hold")
    assert outcome.reason == "health_critical" and "no recovery within 0.5 s" in outcome.detail
    assert outcome.summary["duration_s"] - hold["t"] == pytest.approx(0.5, abs=0.01)
    calls_at_critical = sum(1 for c in policy.calls if c.timestamp - 1000.0 < 1.0)
    assert len(policy.calls) <= calls_at_critical + 1  # rate 0 in critical: inference paused
    assert robot.stops >= 1 and not any(e["event"] == "health_recovered" for e in events)


def test_inline_worker_pauses_at_rate_zero_and_restarts_when_the_rate_returns():
    clock = ManualClock()
    rate = {"v": 1.0}
    policy = FakePolicy(JOINTS, latency_s=0.02)
    w = InlineInference(lambda: Observation({}, np.zeros(6), "p", clock.now()), policy.infer, clock, 0.1,
                        lambda: rate["v"])
    w.start()
    starts = []
    for i in range(300):  # 3 s in 10 ms steps
        t = i * 0.01
        rate["v"] = 0.0 if 0.5 <= t < 2.0 else 1.0
        before = w.started
        w.poll()
        if w.started > before:
            starts.append(round(t, 2))
        clock.advance(0.01)
    assert not [t for t in starts if 0.55 <= t < 2.0]  # paused (the one started just before may deliver)
    assert 2.0 in starts  # resumed at once, not replan/1e-3 seconds later


def test_threaded_worker_resumes_promptly_after_a_pause():
    rate = {"v": 0.0}
    started = []
    done = threading.Event()

    def infer(obs):
        started.append(time.monotonic())
        if len(started) >= 2:
            done.set()
        return obs  # the worker only hands the result on

    w = ThreadedInference(lambda: time.monotonic(), infer, MonotonicClock(), 0.05, lambda: rate["v"])
    w.start()
    try:
        time.sleep(0.3)
        assert len(started) == 1  # the first inference, then paused at rate 0
        t_resume = time.monotonic()
        rate["v"] = 1.0
        assert done.wait(2.0)
        assert started[1] - t_resume < 0.2
    finally:
        w.stop()
