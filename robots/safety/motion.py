"""The motion rules of the safety filter as pure functions of (last command, last velocity, target).

The filter keeps one invariant, and every function here exists to preserve it:

    From the last emitted command p moving at v = (p - p_prev) / dt, braking every DOF at its
    acceleration limit (|v| shrinks by a*dt per tick until 0) stays inside the position range,
    inside the workspace box and under the TCP speed limit.

Because the invariant holds before each tick, a hold can always be executed without breaking any
limit: it emits that braking plan, which was already checked. A new step is only accepted if the
braking plan *from the new state* is checked too (positions analytically, workspace and TCP speed
by forward kinematics over the whole plan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kinematics import RobotKinematics
from .limits import FilterLimits


def braking_speed(distance: np.ndarray, accel: np.ndarray, dt: float) -> np.ndarray:
    """Largest speed v >= 0 such that moving v*dt this tick and then braking at `accel` stops
    within `distance`: v*dt + v^2/(2a) <= d. Written as 2d / (dt + sqrt(dt^2 + 2d/a)) to stay
    accurate for tiny distances. The discrete braking distance is never longer than v^2/(2a)."""
    d = np.maximum(distance, 0.0)
    return 2.0 * d / (dt + np.sqrt(dt * dt + 2.0 * d / accel))


def brake_velocity(v: np.ndarray, a_dt: np.ndarray) -> np.ndarray:
    """Next velocity when braking at the acceleration limit; never reverses direction."""
    return np.sign(v) * np.maximum(np.abs(v) - a_dt, 0.0)


def brake_plan(p: np.ndarray, v: np.ndarray, a_dt: np.ndarray, dt: float) -> np.ndarray:
    """Commands of the braking plan after p (one row per tick, last row at rest); (0, dof) if at rest."""
    ticks = int(np.max(np.ceil(np.abs(v) / a_dt - 1e-12), initial=0))
    if ticks <= 0:
        return np.empty((0, p.shape[0]))
    k = np.arange(1, ticks + 1, dtype=float)[:, None]
    velocities = np.sign(v) * np.maximum(np.abs(v) - k * a_dt, 0.0)
    return p + np.cumsum(velocities * dt, axis=0)


@dataclass(frozen=True)
class VelocityWindow:
    """Per-DOF interval of next-tick velocities allowed by velocity, acceleration and braking rules,
    with which rule set each bound (for intervention reports)."""

    lower: np.ndarray
    upper: np.ndarray
    vmax: np.ndarray

    @property
    def feasible(self) -> bool:
        return bool(np.all(self.lower <= self.upper))

    def contains(self, v: np.ndarray, slack: float = 1e-12) -> bool:
        """Membership with a round-off slack: the braking step sits exactly on a bound."""
        return bool(np.all((v >= self.lower - slack) & (v <= self.upper + slack)))


def velocity_window(p: np.ndarray, v: np.ndarray, lim: FilterLimits, scale: float) -> VelocityWindow:
    a_dt = lim.acceleration * lim.dt
    vmax = lim.velocity * scale
    upper = np.minimum(np.minimum(v + a_dt, vmax), braking_speed(lim.position_max - p, lim.acceleration, lim.dt))
    lower = np.maximum(np.maximum(v - a_dt, -vmax), -braking_speed(p - lim.position_min, lim.acceleration, lim.dt))
    return VelocityWindow(lower=lower, upper=upper, vmax=vmax)


def goal_velocity(p: np.ndarray, target: np.ndarray, target_velocity: np.ndarray, lim: FilterLimits) -> np.ndarray:
    """Velocity that reaches `target` without overshoot: all the way in one tick when close, else
    no faster than lets us stop at the target (plus the target's own motion, so a moving target
    is followed with one tick of lag rather than a braking-distance lag)."""
    error = target - p
    along = np.where(np.sign(target_velocity) == np.sign(error), np.abs(target_velocity), 0.0)
    speed = np.minimum(np.abs(error) / lim.dt, braking_speed(np.abs(error), lim.acceleration, lim.dt) + along)
    return np.sign(error) * speed


class PlanChecker:
    """Checks a candidate next command by forward kinematics over its braking plan: every TCP in
    the workspace box and every tick's TCP displacement under the speed limit."""

    def __init__(self, kinematics: RobotKinematics, lim: FilterLimits):
        self.kin = kinematics
        self.lim = lim

    def tcp(self, q: np.ndarray) -> np.ndarray:
        return self.kin.tcp_positions(q)  # (B, arms, 3)

    def check(
        self, tcp_now: np.ndarray, p_new: np.ndarray, v_new: np.ndarray, tcp_limit: float
    ) -> tuple[str | None, np.ndarray]:
        """(None, TCP of p_new) if acceptable, else the failed rule: "tcp_speed" or "workspace"."""
        lim = self.lim
        path = np.vstack([p_new[None, :], brake_plan(p_new, v_new, lim.acceleration * lim.dt, lim.dt)])
        tcp = self.tcp(path)
        if np.any(tcp < lim.workspace_min) or np.any(tcp > lim.workspace_max):
            return "workspace", tcp[0]
        steps = np.diff(np.concatenate([tcp_now[None], tcp], axis=0), axis=0)
        if np.max(np.linalg.norm(steps, axis=-1)) > tcp_limit * lim.dt:
            return "tcp_speed", tcp[0]
        return None, tcp[0]
