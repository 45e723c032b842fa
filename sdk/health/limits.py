"""The narrow interface between device health and the run loop.

The run loop never reads sensors; it asks a `LimitsProvider` what it may do right now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OperatingLimits:
    """What the run loop is allowed to do at this instant, and why."""

    state: str  # "nominal" | "warm" | "throttled" | "critical"
    inference_rate_scale: float  # 1.0 = as configured; 0.5 = half as many inferences per second
    velocity_scale: float  # multiplies the safety filter's joint/TCP velocity limits (<= 1.0)
    accept_new_chunks: bool  # False in critical: finish the current segment, stop, take nothing new
    reason: str  # human-readable cause of the current state ("" when nominal)


NOMINAL = OperatingLimits("nominal", 1.0, 1.0, True, "")


class LimitsProvider(Protocol):
    def current_limits(self) -> OperatingLimits: ...
