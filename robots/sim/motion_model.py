"""How a simulated joint follows its position target: velocity- and acceleration-limited.

Why not MuJoCo position actuators: their tracking depends on gains, gravity and contacts, so the
simulated arm would move differently from the real one in ways that have nothing to do with the
policy. Real arm controllers (UR servoJ, ARX joint controller) track streamed targets closely
within their rate limits, so the simulator moves each DOF kinematically: a target reachable within
one period under the arm's hardware velocity and acceleration limits is reached exactly; a farther
one is approached at those limits, braking early enough not to overshoot a fixed target.
"""

from __future__ import annotations

import numpy as np


def limited_step(
    q: np.ndarray, v: np.ndarray, target: np.ndarray, dt: float, v_max: np.ndarray, a_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One step of length dt; returns the new (q, v)."""
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
    # Streaming: when the target can be reached this very step within both limits, go there (a
    # servo controller following a feasible stream tracks it exactly). Only infeasible jumps use
    # the braking approach above; that is also how a fixed target is finally landed on.
    v_direct = err / dt
    direct = (np.abs(v_direct) <= v_max) & (np.abs(v_direct - v) <= a_max * dt)
    q_new = np.where(direct, target, q_new)
    v_new = np.where(direct, v_direct, v_new)
    return q_new, v_new


def braking_step(v: np.ndarray, dt: float, a_max: np.ndarray) -> np.ndarray:
    """Velocity after one step of maximum deceleration toward standstill (controlled stop)."""
    return np.sign(v) * np.maximum(np.abs(v) - a_max * dt, 0.0)
