"""Per-DOF arrays of what the filter enforces, derived once from a RobotConfig.

The derivation ("which number wins": operating position range or the hardware one shrunk by the
margin, gripper ranges intersected in, the per-tick step cap folded into the velocity limit) is
done by the filter's C++ core (native/src/safety/filter_spec.cpp), so Python and the C ABI can
never disagree on it; this dataclass is the Python view of its result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import RobotConfig
from .native import filter_spec, load_core


@dataclass(frozen=True)
class FilterLimits:
    dt: float  # control period (s); the filter emits one command per period
    position_min: np.ndarray  # what commands may reach (rad / m)
    position_max: np.ndarray
    hardware_min: np.ndarray  # targets beyond these are not "clamped", they are rejected
    hardware_max: np.ndarray
    velocity: np.ndarray  # at velocity_scale = 1 (rad/s, m/s)
    acceleration: np.ndarray  # never scaled: braking ability does not improve when we go slower
    tcp_speed: float  # m/s at velocity_scale = 1
    tracking_error: float  # rad
    workspace_min: np.ndarray  # (3,)
    workspace_max: np.ndarray
    stale_after_s: float

    @classmethod
    def from_config(cls, cfg: RobotConfig) -> "FilterLimits":
        return cls.from_native(load_core().derive_limits(filter_spec(cfg)))

    @classmethod
    def from_native(cls, derived: dict) -> "FilterLimits":
        return cls(**{k: np.asarray(v, dtype=float) if isinstance(v, np.ndarray) else float(v) for k, v in derived.items()})
