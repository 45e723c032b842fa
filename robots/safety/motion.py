"""The motion rules of the safety filter, as the C++ core (native/src/safety/safety_filter.cpp)
implements them; these wrappers let tests and tools call the same code.

The filter keeps one invariant, and every rule exists to preserve it:

    From the last emitted command p moving at v = (p - p_prev) / dt, braking every DOF at its
    acceleration limit (|v| shrinks by a*dt per tick until 0) stays inside the position range,
    inside the workspace box and under the TCP speed limit.

Because the invariant holds before each tick, a hold can always be executed without breaking any
limit: it emits that braking plan, which was already checked. A new step is only accepted if the
braking plan *from the new state* is checked too (positions analytically, workspace and TCP speed
by forward kinematics over the whole plan).
"""

from __future__ import annotations

import numpy as np

from .native import load_core


def braking_speed(distance: np.ndarray, accel: np.ndarray, dt: float) -> np.ndarray:
    """Largest speed v >= 0 such that moving v*dt this tick and then braking at `accel` stops
    within `distance`: v*dt + v^2/(2a) <= d, computed as 2d / (dt + sqrt(dt^2 + 2d/a)) to stay
    accurate for tiny distances. The discrete braking distance is never longer than v^2/(2a)."""
    return np.asarray(load_core().braking_speed(distance, accel, dt), dtype=float)


def brake_plan(p: np.ndarray, v: np.ndarray, a_dt: np.ndarray, dt: float) -> np.ndarray:
    """Commands of the braking plan after p (one row per tick, last row at rest); (0, dof) if at rest."""
    p = np.asarray(p, dtype=float)
    return np.asarray(load_core().brake_plan(p, np.asarray(v, dtype=float), np.asarray(a_dt, dtype=float), float(dt)))
