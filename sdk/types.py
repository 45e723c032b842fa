"""Typed observation/action boundary: everything entering or leaving a Policy is checked here once."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import ObservationError


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array dtype={value.dtype} shape={tuple(value.shape)}"
    return f"{type(value).__name__}"


@dataclass
class Observation:
    """What a robot saw at one instant.

    cameras: robot camera name -> H×W×3 uint8 RGB image (any size; the family resizes).
    state:   robot state vector in the robot's units (float).
    prompt:  the language instruction.
    timestamp: seconds (time.monotonic() domain) when the observation was captured; used for
               latency compensation, so it must come from the capture, not from inference.
    """

    cameras: dict[str, np.ndarray]
    state: np.ndarray
    prompt: str
    timestamp: float = field(default_factory=time.monotonic)

    def validate(self, required_cameras: tuple[str, ...] = (), state_dim: int | None = None) -> None:
        """Raise ObservationError naming the first bad field; never coerce silently."""
        if not isinstance(self.cameras, dict):
            raise ObservationError("cameras", "dict of camera name -> HxWx3 uint8 image", _describe(self.cameras))
        for name in required_cameras:
            if name not in self.cameras:
                raise ObservationError(
                    f"cameras.{name}", "a required camera image", f"missing (present: {sorted(self.cameras) or 'none'})"
                )
        for name, image in self.cameras.items():
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ObservationError(f"cameras.{name}", "HxWx3 uint8 RGB array", _describe(image))
            if image.shape[0] < 1 or image.shape[1] < 1:
                raise ObservationError(f"cameras.{name}", "non-empty image", f"shape {image.shape}")
        state = self.state
        if not isinstance(state, np.ndarray) or state.ndim != 1 or not np.issubdtype(state.dtype, np.floating):
            raise ObservationError("state", "1-D float array", _describe(state))
        if state_dim is not None and state.shape[0] != state_dim:
            raise ObservationError("state", f"length {state_dim}", f"length {state.shape[0]}")
        bad = np.flatnonzero(~np.isfinite(state))
        if bad.size:
            raise ObservationError("state", "finite values", f"non-finite value {state[bad[0]]} at index {bad[0]}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ObservationError("prompt", "non-empty instruction text", repr(self.prompt))
        if not isinstance(self.timestamp, (int, float)) or not math.isfinite(self.timestamp):
            raise ObservationError("timestamp", "finite float seconds", repr(self.timestamp))


@dataclass
class ActionChunk:
    """A horizon of actions in the robot's units, ready for the safety filter.

    actions: horizon × robot-action-dim float32, row t is meant for obs.timestamp + t * control_period_s.
    control_period_s: spacing between consecutive rows the policy was trained with.
    names: one name per action dimension (from the pack's action space).
    latency_ms: per-stage wall time of the inference that produced it (preprocess, vision, ...).
    """

    actions: np.ndarray
    control_period_s: float
    timestamp: float
    names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def time_of(self, index: int) -> float:
        """When row `index` is meant to be executed (same clock as the observation)."""
        return self.timestamp + index * self.control_period_s

    def to_dict(self) -> dict:
        return {
            "actions": self.actions.tolist(),
            "control_period_s": self.control_period_s,
            "timestamp": self.timestamp,
            "names": list(self.names),
            "units": list(self.units),
            "latency_ms": dict(self.latency_ms),
        }
