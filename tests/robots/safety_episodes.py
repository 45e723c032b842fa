"""Adversarial episodes for the safety filter and the limit checks applied to what it emitted.

Shared by the hypothesis property tests (small, shrinkable) and the slow seeded sweep (>= 100,000
chunks). A tick is (target kind, time kind, state kind, resume?); targets include NaN, Inf, 1e30,
sign flips of the previous target, random points anywhere in the hardware range, and small steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from safety_fakes import FakeClock, FakeRobot

from vla_edge.robots.config import RobotConfig
from vla_edge.robots.kinematics import RobotKinematics
from vla_edge.robots.safety import FilterLimits, SafetyError, SafetyFilter

# Valid ticks follow a persistent goal most of the time (like the rows of a chunk), so the arm
# reaches its velocity, TCP-speed and workspace limits; each episode has its own fault rate.
VALID_TARGETS = ("goal",) * 10 + ("new_goal",) * 2 + ("near",) * 3 + ("to_limit",) * 2 + ("uniform", "flip", "flip", "hold")
FAULTS = (
    ("nan", "fresh", "ok"), ("inf", "fresh", "ok"), ("huge", "fresh", "ok"), ("neg_huge", "fresh", "ok"),
    ("none", "fresh", "ok"), ("goal", "stale", "ok"), ("goal", "missing", "ok"), ("goal", "future", "ok"),
    ("goal", "fresh", "missing"), ("goal", "fresh", "stale"), ("goal", "fresh", "nan"),
)
FAULT_RATES = (0.0, 0.01, 0.05, 0.2, 0.6)

# Numerical tolerances for the checks below (float64 round-off on sums of a few hundred steps).
POS_TOL = 1e-9  # rad or m
TCP_TOL = 1e-9  # m per tick


@dataclass(frozen=True)
class Tick:
    target: str
    time: str
    state: str
    resume: bool
    noise: float  # in [-1, 1]: where in the range / how big the "near" step is


# Start poses inside every operating range and inside the workspace box.
HOME = {
    "ur3": np.array([0.0, -1.571, 1.571, -1.571, -1.571, 0.0]),
    "arx5": np.array([0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.03]),
    "arx5-bimanual": np.array([0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.03] * 2),
}


def _target(kind: str, noise: float, rng: np.random.Generator, q: np.ndarray, prev: np.ndarray, lim: FilterLimits):
    if kind == "none":
        return None
    if kind == "hold":
        return q.copy()
    if kind == "goal":  # keep going where the last target pointed, like the rows of one chunk
        return prev.copy()
    if kind == "new_goal":
        return np.clip(q + noise * rng.uniform(-1.0, 1.0, q.shape), lim.hardware_min, lim.hardware_max)
    if kind == "near":
        return q + noise * 0.05 * rng.standard_normal(q.shape)
    if kind == "to_limit":  # push some DOFs to (beyond the operating range, inside the hardware) ends
        pick = rng.random(q.shape) < 0.5
        return np.where(pick, np.where(noise > 0, lim.hardware_max, lim.hardware_min), q)
    if kind == "uniform":
        return rng.uniform(lim.hardware_min, lim.hardware_max)
    if kind == "flip":
        return -prev
    x = q.copy()
    i = int(rng.integers(q.shape[0]))
    x[i] = {"nan": np.nan, "inf": np.inf, "huge": 1e30, "neg_huge": -1e30}[kind]
    return x


def run_episode(
    config: RobotConfig, ticks: list[Tick], scale: float | list[float], seed: int, shadow: bool = False
) -> tuple[np.ndarray, SafetyFilter, FakeRobot]:
    """Feed `ticks` to a fresh filter; return the per-tick commanded positions (rows: q0, q0, then
    one per tick; ticks where nothing was sent repeat the previous command, as the arm holds)."""
    rng = np.random.default_rng(seed)
    clock = FakeClock()
    lim = FilterLimits.from_config(config)
    q0 = HOME[config.name.removesuffix("-sim")].copy()
    if rng.random() < 0.5:
        q0 = _start_near_limits(config, lim, q0, rng)
    robot = FakeRobot(config, q0)
    filt = SafetyFilter(robot, config, shadow=shadow, clock=clock)
    dt = config.control_period_s
    rows = [robot.q.copy(), robot.q.copy()]
    prev_target = robot.q.copy()
    scales = scale if isinstance(scale, list) else [scale] * len(ticks)
    for tick, tick_scale in zip(ticks, scales):
        clock.advance(dt)
        now = clock.t
        if tick.resume and filt.state == "stopped":
            try:
                filt.resume(robot.read_state(now))
            except SafetyError:
                pass
        target = _target(tick.target, tick.noise, rng, robot.q, prev_target, lim)
        if target is not None and np.all(np.isfinite(target)):
            prev_target = target
        t_time = {"fresh": now, "stale": now - 10 * lim.stale_after_s, "missing": None,
                  "future": now + 10 * lim.stale_after_s}[tick.time]
        state = robot.read_state(now)
        if tick.state == "missing":
            state = None
        elif tick.state == "stale":
            state = robot.read_state(now - 10 * lim.stale_after_s)
        elif tick.state == "nan":
            q = robot.q.copy()
            q[0] = np.nan
            state = robot.read_state(now).__class__(q=q, qd=np.zeros_like(q), timestamp=now)
        result = filt.step(target, t_time, state, velocity_scale=tick_scale)
        if result.sent:
            assert result.command is not None
            robot.q = result.command.copy()  # perfect tracking: the arm is where it was told
        rows.append(robot.q.copy())
    if not shadow:
        sent = robot.port.commands
        assert all(np.all(np.isfinite(c)) for c in sent), "non-finite command sent"
    return np.array(rows), filt, robot


def _start_near_limits(config: RobotConfig, lim: FilterLimits, q0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put grippers, each arm's base joint and last joint within 5% of an end of their range, so
    braking against position limits is exercised; base-joint moves that would put the TCP outside
    the workspace box are undone (the filter refuses to move from outside the box)."""
    kin = RobotKinematics(config.kinematics)
    q = q0.copy()
    dofs = [*config.gripper_indices]
    for arm in config.kinematics.arms:
        dofs += [arm.joint_indices[-1], arm.joint_indices[0]]
    for i in dofs:
        before = q[i]
        span = lim.position_max[i] - lim.position_min[i]
        at_max = rng.random() < 0.5
        q[i] = lim.position_max[i] - rng.uniform(0, 0.05) * span if at_max else lim.position_min[i] + rng.uniform(0, 0.05) * span
        tcp = kin.tcp_positions(q)
        if np.any(tcp < lim.workspace_min) or np.any(tcp > lim.workspace_max):
            q[i] = before
    return q


def assert_within_limits(config: RobotConfig, rows: np.ndarray, scale: float, kin: RobotKinematics | None = None) -> None:
    """Every emitted command respects position, velocity, acceleration, TCP speed and workspace."""
    lim = FilterLimits.from_config(config)
    dt = lim.dt
    assert np.all(np.isfinite(rows)), "non-finite command"
    assert np.all(rows >= lim.position_min - POS_TOL), f"below position_min: {rows.min(axis=0)} < {lim.position_min}"
    assert np.all(rows <= lim.position_max + POS_TOL), f"above position_max: {rows.max(axis=0)} > {lim.position_max}"
    step = np.abs(np.diff(rows, axis=0))
    over_v = step - lim.velocity * scale * dt
    assert np.all(over_v <= POS_TOL), f"velocity exceeded by {over_v.max() / dt:.3g} (per-DOF {over_v.max(axis=0) / dt})"
    second = np.abs(np.diff(rows, n=2, axis=0))
    over_a = second - lim.acceleration * dt * dt
    assert np.all(over_a <= POS_TOL), f"acceleration exceeded by {over_a.max() / dt / dt:.3g}"
    kin = kin or RobotKinematics(config.kinematics)
    tcp = kin.tcp_positions(rows)  # (T, arms, 3)
    assert np.all(tcp >= lim.workspace_min - TCP_TOL) and np.all(tcp <= lim.workspace_max + TCP_TOL), "left workspace"
    tcp_step = np.linalg.norm(np.diff(tcp, axis=0), axis=-1)
    over_tcp = tcp_step - lim.tcp_speed * scale * dt
    assert np.all(over_tcp <= TCP_TOL), f"TCP speed exceeded by {over_tcp.max() / dt:.3g} m/s"


def make_tick(fault_draw: float, fault_rate: float, choice: int, resume: bool, noise: float) -> Tick:
    """One tick from raw draws; shared by the hypothesis strategy and the seeded sweep."""
    if fault_draw < fault_rate:
        target, time, state = FAULTS[choice % len(FAULTS)]
    else:
        target, time, state = VALID_TARGETS[choice % len(VALID_TARGETS)], "fresh", "ok"
    return Tick(target, time, state, resume, noise)


def random_ticks(rng: np.random.Generator, n: int) -> list[Tick]:
    """Seeded equivalent of the hypothesis strategy, for the slow sweep."""
    rate = float(rng.choice(FAULT_RATES))
    draws, choices = rng.random(n), rng.integers(1 << 16, size=n)
    resumes, noise = rng.random(n) < 0.3, rng.uniform(-1, 1, size=n)
    return [make_tick(float(d), rate, int(c), bool(r), float(e)) for d, c, r, e in zip(draws, choices, resumes, noise)]
