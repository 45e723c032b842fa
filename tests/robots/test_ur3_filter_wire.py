"""The SafetyFilter driving the real UR3 driver: what reaches the controller is exactly what the
filter says it sent, and a shadow run puts nothing on the wire."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rtde_control")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ur_emulator import EmulatorHandle  # noqa: E402
from ur_emulator.testing import ur3_config  # noqa: E402

from vla_edge.robots.registry import create_robot  # noqa: E402
from vla_edge.robots.safety import SafetyFilter  # noqa: E402


def _policy_targets(q0: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """A smooth random joint trajectory around q0 (a few centiradians), like a policy's chunk."""
    rng = np.random.default_rng(seed)
    amp, freq, phase = rng.uniform(0.01, 0.05, 6), rng.uniform(0.5, 2.0, 6), rng.uniform(0, 2 * np.pi, 6)
    t = np.arange(n)[:, None] / 125.0
    return list(q0 + amp * (np.sin(2 * np.pi * freq * t + phase) - np.sin(phase)))


def _run(shadow: bool, ticks: int, seed: int):
    with EmulatorHandle() as emu:
        cfg = ur3_config(emu.host)
        robot = create_robot(cfg, shadow=shadow)
        with robot:
            safety = SafetyFilter(robot, cfg, shadow=shadow)
            q0 = robot.read_state().q
            results = []
            for target in _policy_targets(q0, ticks, seed):
                state = robot.read_state()
                results.append(safety.step(target, time.monotonic(), state))
                if shadow:
                    time.sleep(cfg.control_period_s)  # live mode is paced by the driver itself
        return results, emu.log(), emu.state()


def test_shadow_run_through_the_filter_sends_nothing():
    results, log, state = _run(shadow=True, ticks=80, seed=int(time.time()) % 1000)
    assert sum(r.command is not None for r in results) > 60  # the filter did run and compute commands
    assert [e for e in log if e["kind"] in ("motion", "stop")] == []
    assert state["accepted"]["script"] == 0 and state["accepted"]["dashboard"] == 0


def test_live_run_through_the_filter_puts_exactly_the_filtered_targets_on_the_wire():
    results, log, _ = _run(shadow=False, ticks=60, seed=int(time.time()) % 1000)
    sent = [r.command for r in results if r.sent]
    assert len(sent) > 40, [r.codes for r in results[:5]]
    servo = [np.array(e["args"]["q"]) for e in log if e["name"] == "servoJ"]
    assert len(servo) == len(sent)
    for wire, filtered in zip(servo, sent):
        np.testing.assert_array_equal(wire, filtered)
    names = [e["name"] for e in log]
    assert names.index("servoStop") > max(i for i, n in enumerate(names) if n == "servoJ")
