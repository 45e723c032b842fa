"""How a simulated joint follows its position target: velocity- and acceleration-limited.

Why not MuJoCo position actuators: their tracking depends on gains, gravity and contacts, so the
simulated arm would move differently from the real one in ways that have nothing to do with the
policy. Real arm controllers (UR servoJ, ARX joint controller) track streamed targets closely
within their rate limits, so the simulator moves each DOF kinematically toward its target with
the arm's hardware velocity and acceleration limits, braking early enough not to overshoot.
"""

from __future__ import annotations

import numpy as np


def limited_step(
    q: np.ndarray, v: np.ndarray, target: np.ndarray, dt: float, v_max: np.ndarray, a_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One step of length dt; returns the new (q, v). Lands exactly on the target when it can."""
    err = target - q
    dist = np.abs(err)
    # Fastest speed from which the arm can still stop at the target when it brakes by a*dt per
    # step from the next step on (the discrete form of v^2 = 2 a d, solved for v after this step's
    # move: v^2 / 2a + v dt / 2 <= d), no faster than the limit, and no faster than landing now.
    brake = -0.5 * a_max * dt + np.sqrt((0.5 * a_max * dt) ** 2 + 2.0 * a_max * dist)
    speed = np.minimum(np.minimum(v_max, brake), dist / dt)
    v_des = np.sign(err) * speed
    v_new = v + np.clip(v_des - v, -a_max * dt, a_max * dt)
    q_new = q + v_new * dt
    # Snap when the remaining error is below what one acceleration step can resolve.
    done = (dist <= a_max * dt * dt) & (np.abs(v) <= a_max * dt)
    q_new = np.where(done, target, q_new)
    v_new = np.where(done, 0.0, v_new)
    return q_new, v_new


def braking_step(v: np.ndarray, dt: float, a_max: np.ndarray) -> np.ndarray:
    """Velocity after one step of maximum deceleration toward standstill (controlled stop)."""
    return np.sign(v) * np.maximum(np.abs(v) - a_max * dt, 0.0)
