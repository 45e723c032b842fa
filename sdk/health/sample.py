"""One shape for what every health monitor reads, so the governor never cares where it came from.

A sensor that cannot be read (missing file, permission denied, garbage, implausible value, driver
error) is listed in `unavailable` with the reason, and is absent from the readings: a broken
sensor is never turned into a number, so it can never read as "cool".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

# Outside this range a reading is a broken or offline sensor, not a temperature (Jetson reports
# -256 C for offline zones; a disconnected thermistor reads near 0 K or hundreds of degrees).
PLAUSIBLE_C = (-40.0, 150.0)


class SensorError(Exception):
    """A sensor could not be read; the message is the reason shown to the user."""


@dataclass(frozen=True)
class ClockReading:
    """A clock domain's frequency. `max_hz` is the hardware maximum; `cap_hz` the highest
    frequency currently allowed (power mode or thermal cap), when the platform reports it."""

    current_hz: float
    max_hz: float
    cap_hz: float | None = None

    @property
    def ratio(self) -> float:
        return self.current_hz / self.max_hz

    @property
    def cap_ratio(self) -> float | None:
        return None if self.cap_hz is None else self.cap_hz / self.max_hz

    def to_dict(self) -> dict[str, Any]:
        return {"current_hz": self.current_hz, "max_hz": self.max_hz, "cap_hz": self.cap_hz,
                "ratio": round(self.ratio, 4)}


@dataclass(frozen=True)
class Throttle:
    """An active throttle flag: `source` (e.g. "gpu0", "cooling_device3") and `reason` (e.g.
    "hw_thermal_slowdown"); `kind` groups reasons: thermal, power, slowdown or other."""

    source: str
    reason: str
    kind: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason} ({self.kind})"


@dataclass(frozen=True)
class HealthSample:
    timestamp: float  # time.monotonic() domain (or the governor's injected clock)
    sources: tuple[str, ...]  # monitors that contributed
    temperatures_c: Mapping[str, float] = field(default_factory=dict)  # zone -> degrees C (valid readings only)
    trip_points_c: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # zone -> {type: C}
    clocks: Mapping[str, ClockReading] = field(default_factory=dict)
    throttles: tuple[Throttle, ...] = ()
    power_mode: str | None = None
    memory_available_bytes: int | None = None
    memory_total_bytes: int | None = None
    unavailable: Mapping[str, str] = field(default_factory=dict)  # sensor -> why it could not be read

    @property
    def memory_headroom(self) -> float | None:
        """Fraction of memory still available (0..1), None when unknown."""
        if not self.memory_total_bytes or self.memory_available_bytes is None:
            return None
        return self.memory_available_bytes / self.memory_total_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp, "sources": list(self.sources),
            "temperatures_c": dict(self.temperatures_c),
            "trip_points_c": {k: dict(v) for k, v in self.trip_points_c.items()},
            "clocks": {k: c.to_dict() for k, c in self.clocks.items()},
            "throttles": [{"source": t.source, "reason": t.reason, "kind": t.kind} for t in self.throttles],
            "power_mode": self.power_mode,
            "memory_available_bytes": self.memory_available_bytes, "memory_total_bytes": self.memory_total_bytes,
            "memory_headroom": self.memory_headroom,
            "unavailable": dict(self.unavailable),
        }


class SampleBuilder:
    """Collects one monitor's readings; every `add_*` validates, and a bad value becomes an
    `unavailable` entry instead of a reading."""

    def __init__(self, source: str):
        self.source = source
        self.temperatures: dict[str, float] = {}
        self.trips: dict[str, dict[str, float]] = {}
        self.clocks: dict[str, ClockReading] = {}
        self.throttles: list[Throttle] = []
        self.power_mode: str | None = None
        self.mem_available: int | None = None
        self.mem_total: int | None = None
        self.unavailable: dict[str, str] = {}

    def fail(self, sensor: str, why: str) -> None:
        self.unavailable[sensor] = why

    def temperature(self, zone: str, celsius: float) -> None:
        value = _finite(celsius)
        if value == 0.0:  # what unready sensors and unconnected thermistors report; no live chip is at 0.000 C
            self.fail(f"temperature:{zone}", "reads exactly 0 C (sensor not ready)")
            return
        if value is None or not PLAUSIBLE_C[0] < value < PLAUSIBLE_C[1]:
            self.fail(f"temperature:{zone}", f"implausible value {celsius!r} C (sensor offline or broken)")
            return
        self.temperatures[zone] = value

    def trip_point(self, zone: str, kind: str, celsius: float) -> None:
        value = _finite(celsius)
        if value is not None and PLAUSIBLE_C[0] < value < 200.0:  # trips may sit above the plausible range
            self.trips.setdefault(zone, {})
            # Several trips of one type (e.g. two "passive"): the lowest one acts first.
            self.trips[zone][kind] = min(value, self.trips[zone].get(kind, math.inf))

    def clock(self, name: str, current_hz: float, max_hz: float, cap_hz: float | None = None) -> None:
        cur, mx, cap = _finite(current_hz), _finite(max_hz), None if cap_hz is None else _finite(cap_hz)
        if cur is None or mx is None or mx <= 0 or cur < 0 or cur > 1.5 * mx:
            self.fail(f"clock:{name}", f"implausible frequencies current={current_hz!r} max={max_hz!r}")
            return
        if cap is not None and not 0 < cap <= 1.5 * mx:
            cap = None
        self.clocks[name] = ClockReading(cur, mx, cap)

    def throttle(self, source: str, reason: str, kind: str) -> None:
        self.throttles.append(Throttle(source, reason, kind))

    def memory(self, available: int, total: int) -> None:
        if total > 0 and 0 <= available <= total:
            self.mem_available, self.mem_total = int(available), int(total)
        else:
            self.fail("memory", f"implausible memory available={available!r} total={total!r}")

    def build(self, timestamp: float) -> HealthSample:
        return HealthSample(timestamp, (self.source,), dict(self.temperatures), dict(self.trips),
                            dict(self.clocks), tuple(self.throttles), self.power_mode,
                            self.mem_available, self.mem_total, dict(self.unavailable))


class Monitor(Protocol):
    """A source of health samples. `sample` must not raise for a broken sensor (it reports it
    unavailable); the governor still catches anything it raises and fails that monitor closed."""

    name: str

    def available(self) -> tuple[bool, str]:
        """Can this monitor read anything useful here, and what (or why not)."""
        ...

    def sample(self, now: float) -> HealthSample: ...


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def merge_samples(samples: Iterable[HealthSample], timestamp: float) -> HealthSample:
    """One sample from several monitors. Names are kept as the monitors give them (they prefix
    their own); on a clash the later monitor wins, and memory comes from the first that has it."""
    temps: dict[str, float] = {}
    trips: dict[str, Mapping[str, float]] = {}
    clocks: dict[str, ClockReading] = {}
    throttles: list[Throttle] = []
    unavailable: dict[str, str] = {}
    sources: list[str] = []
    power_mode = None
    mem: tuple[int | None, int | None] = (None, None)
    for s in samples:
        sources.extend(s.sources)
        temps.update(s.temperatures_c)
        trips.update(s.trip_points_c)
        clocks.update(s.clocks)
        throttles.extend(s.throttles)
        unavailable.update(s.unavailable)
        power_mode = power_mode or s.power_mode
        if mem[1] is None and s.memory_total_bytes:
            mem = (s.memory_available_bytes, s.memory_total_bytes)
    return HealthSample(timestamp, tuple(sources), temps, trips, clocks, tuple(throttles), power_mode,
                        mem[0], mem[1], unavailable)
