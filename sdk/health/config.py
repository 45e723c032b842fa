"""The run YAML's `health:` section: thresholds, hysteresis and what each state does.

Every key is optional; `health: {}` means auto-selected monitors with these defaults. Unknown
keys and out-of-range values are errors naming `health.<key>`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError

State = Literal["nominal", "warm", "throttled", "critical"]
STATES: tuple[str, ...] = ("nominal", "warm", "throttled", "critical")
MonitorName = Literal["generic", "jetson", "jtop", "nvml"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Model):
    """Degrees C at which a temperature makes the device warm / throttled / critical."""

    warm: float = Field(default=75.0, gt=0, lt=150)
    throttled: float = Field(default=85.0, gt=0, lt=150)
    critical: float = Field(default=95.0, gt=0, lt=150)

    @model_validator(mode="after")
    def _ordered(self) -> "Thresholds":
        if not self.warm <= self.throttled <= self.critical:
            raise ValueError(f"expected warm <= throttled <= critical, got {self.warm}, {self.throttled}, {self.critical}")
        return self


class StateAction(_Model):
    inference_rate_scale: float = Field(ge=0, le=1, description="1 = as configured; 0.5 = half as many inferences/s")
    velocity_scale: float = Field(gt=0, le=1, description="multiplies the safety filter's velocity limits")


class CriticalAction(_Model):
    inference_rate_scale: float = Field(default=0.0, ge=0, le=1, description="0 pauses inference while critical")
    velocity_scale: float = Field(
        default=0.25, gt=0, le=1,
        description="speed for finishing the current segment (0 is not allowed: it would brake at once "
                    "with a non-resumable fault instead of finishing the segment)")
    resume_wait_s: float = Field(
        default=120.0, ge=0, le=3600,
        description="stopped in critical: wait this long for health to return to nominal and resume; 0 = end the run")


class ClockRules(_Model):
    cap_drop_ratio: float | None = Field(
        default=0.8, gt=0, le=1,
        description="a clock whose cap (highest allowed frequency) falls below this fraction of its cap at the "
                    "first sample under the same power mode is thermally capped -> throttled; null = off")
    min_ratio: float | None = Field(
        default=None, gt=0, le=1,
        description="current/max frequency below this -> throttled; off by default because idle clocks are low by design")


class HealthConfig(_Model):
    enabled: bool = True
    monitors: Literal["auto"] | list[MonitorName] = "auto"
    sample_period_s: float = Field(default=0.5, gt=0, le=10,
                                   description="sensor reads happen this often, off the control thread")
    stale_after_s: float = Field(default=5.0, gt=0, le=120,
                                 description="no completed sample for this long -> no_sensor_state")
    temperature_c: Thresholds = Field(default_factory=Thresholds)
    zones: dict[str, Thresholds] = Field(default_factory=dict, description="per-zone thresholds (fnmatch patterns)")
    ignore_zones: list[str] = Field(
        default_factory=lambda: ["PMIC-Die*"],
        description="zones never used (fnmatch patterns); Jetson TX-family PMIC-Die reads a fixed 100 C "
                    "(jetson-stats skips it too)")
    use_trip_points: bool = Field(default=True, description="a zone's own trip points lower its thresholds")
    trip_margin_c: float = Field(default=5.0, ge=0, le=50)
    hysteresis_c: float = Field(default=5.0, ge=0, le=50)
    recover_hold_s: float = Field(default=3.0, ge=0, le=600, description="calm this long before stepping down")
    throttle_flags: dict[Literal["thermal", "power", "slowdown"], State] = Field(
        default_factory=lambda: {"thermal": "throttled", "slowdown": "throttled", "power": "warm"})
    clocks: ClockRules = Field(default_factory=ClockRules)
    memory_headroom_warm: float | None = Field(default=0.05, gt=0, lt=1,
                                               description="available memory fraction below this -> warm")
    no_sensor_state: Literal["warm", "throttled", "critical"] = Field(
        default="warm", description="state when no temperature is readable, or a readable one is lost")
    warm: StateAction = Field(default_factory=lambda: StateAction(inference_rate_scale=1.0, velocity_scale=1.0))
    throttled: StateAction = Field(default_factory=lambda: StateAction(inference_rate_scale=0.5, velocity_scale=0.5))
    critical: CriticalAction = Field(default_factory=CriticalAction)

    @model_validator(mode="after")
    def _stale_after_a_period(self) -> "HealthConfig":
        if self.stale_after_s <= self.sample_period_s:
            raise ValueError(f"stale_after_s ({self.stale_after_s}) must be longer than sample_period_s "
                             f"({self.sample_period_s})")
        return self


def parse_health_config(data: dict[str, Any] | None, where: str = "health") -> HealthConfig:
    try:
        return HealthConfig.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"{where}.{loc}" if loc else where, msg) from None
