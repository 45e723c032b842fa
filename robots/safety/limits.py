"""Per-DOF arrays of what the filter enforces, derived once from a RobotConfig.

Keeping this separate from the filter makes the rule "which number wins" readable in one place:
operating position range (or the hardware one) shrunk by the margin, gripper ranges intersected in,
and the per-tick step cap folded into the velocity limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import RobotConfig


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
        hw, op = cfg.hardware_limits, cfg.limits
        dt = cfg.control_period_s
        lo = np.array(op.position_min if op.position_min is not None else hw.position_min, dtype=float)
        hi = np.array(op.position_max if op.position_max is not None else hw.position_max, dtype=float)
        vel = np.array(op.velocity, dtype=float)
        if op.max_step is not None:
            vel = np.minimum(vel, np.array(op.max_step, dtype=float) / dt)
        margin = np.full(cfg.dof, op.position_margin)
        for g in cfg.grippers:
            margin[g.index] = 0.0
            lo[g.index] = max(lo[g.index], g.range[0])
            hi[g.index] = min(hi[g.index], g.range[1])
            vel[g.index] = min(vel[g.index], g.max_rate)
        return cls(
            dt=dt,
            position_min=lo + margin,
            position_max=hi - margin,
            hardware_min=np.array(hw.position_min, dtype=float),
            hardware_max=np.array(hw.position_max, dtype=float),
            velocity=vel,
            acceleration=np.array(op.acceleration, dtype=float),
            tcp_speed=float(op.tcp_speed),
            tracking_error=float(op.tracking_error),
            workspace_min=np.array(cfg.workspace.min, dtype=float),
            workspace_max=np.array(cfg.workspace.max, dtype=float),
            stale_after_s=float(cfg.stale_after_s),
        )
