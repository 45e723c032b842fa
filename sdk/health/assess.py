"""What state a health sample calls for, and why (pure policy; the governor adds time).

Each sample is assessed twice: with the configured thresholds (may the state go *up*?) and with
every temperature threshold lowered by the hysteresis (may it come *down*, and how far?). A
temperature between the two keeps the current state, so a zone hovering at a threshold does not
make the state flap.

Never "cool" by accident: no readable temperature at all, or a zone that was readable and no
longer is, counts as `no_sensor_state` (default warm) — a lost zone as at least the level it
had when it was last read.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .config import STATES, HealthConfig, Thresholds
from .sample import HealthSample

_TRIP_THROTTLE = ("passive", "slowdown")
_TRIP_CRITICAL = ("critical", "hot", "shutdown")


@dataclass(frozen=True)
class Assessment:
    level: int  # index into STATES
    causes: tuple[str, ...]  # what put it at this level (empty for nominal)

    @property
    def state(self) -> str:
        return STATES[self.level]


def _level(name: str) -> int:
    return STATES.index(name)


def _pick(found: list[tuple[int, str]]) -> Assessment:
    top = max((lvl for lvl, _ in found), default=0)
    return Assessment(top, tuple(c for lvl, c in found if lvl == top and top > 0))


def zone_thresholds(zone: str, cfg: HealthConfig, trips: dict[str, float]) -> tuple[float, float, float]:
    """(warm, throttled, critical) for one zone: its configured thresholds, lowered by its own trip
    points (minus trip_margin_c) so we degrade before the hardware does."""
    t: Thresholds = next((v for pat, v in cfg.zones.items() if fnmatch.fnmatchcase(zone, pat)), cfg.temperature_c)
    warm, throttled, critical = t.warm, t.throttled, t.critical
    if cfg.use_trip_points:
        for kind, c in trips.items():
            if kind in _TRIP_THROTTLE:
                throttled = min(throttled, c - cfg.trip_margin_c)
            elif kind in _TRIP_CRITICAL:
                critical = min(critical, c - cfg.trip_margin_c)
        throttled = min(throttled, critical)
        warm = min(warm, throttled)
    return warm, throttled, critical


class Assessor:
    """Holds what assessment must remember between samples: zones seen before (and their last
    level) and the highest clock caps seen under the current power mode."""

    def __init__(self, cfg: HealthConfig):
        self.cfg = cfg
        self._zone_level: dict[str, int] = {}
        self._caps: dict[str, float] = {}
        self._power_mode: str | None = None

    def _ignored(self, zone: str) -> bool:
        return any(fnmatch.fnmatchcase(zone, p) for p in self.cfg.ignore_zones)

    def _temperatures(self, s: HealthSample, offset_c: float) -> list[tuple[int, str]]:
        found = []
        for zone, c in s.temperatures_c.items():
            if self._ignored(zone):
                continue
            limits = zone_thresholds(zone, self.cfg, dict(s.trip_points_c.get(zone, {})))
            for lvl in (3, 2, 1):
                if c >= limits[lvl - 1] - offset_c:
                    hyst = f" - {offset_c:g} C hysteresis" if offset_c else ""
                    found.append((lvl, f"{zone} {c:.1f} C >= {STATES[lvl]} {limits[lvl - 1]:.1f} C{hyst}"))
                    break
        return found

    def _missing(self, s: HealthSample) -> list[tuple[int, str]]:
        floor = _level(self.cfg.no_sensor_state)
        found = []
        for zone, last in self._zone_level.items():
            if zone not in s.temperatures_c:
                why = s.unavailable.get(f"temperature:{zone}", "no longer reported")
                found.append((max(last, floor), f"sensor lost: {zone} ({why})"))
        usable = [z for z in s.temperatures_c if not self._ignored(z)]
        if not usable and not self._zone_level:
            reasons = [f"{k}: {v}" for k, v in s.unavailable.items()][:3]
            detail = "; ".join(reasons) or f"monitors {', '.join(s.sources) or 'none'} found no temperature sensor"
            found.append((floor, f"no temperature sensor readable ({detail})"))
        return found

    def _flags_clocks_memory(self, s: HealthSample) -> list[tuple[int, str]]:
        cfg = self.cfg
        found = [(_level(cfg.throttle_flags.get(t.kind, "warm")), f"throttle flag {t}") for t in s.throttles]
        for name, clock in s.clocks.items():
            base = self._caps.get(name)
            if cfg.clocks.cap_drop_ratio is not None and clock.cap_hz is not None and base:
                if clock.cap_hz < cfg.clocks.cap_drop_ratio * base:
                    found.append((2, f"clock cap dropped: {name} {clock.cap_hz / 1e6:.0f} MHz < "
                                     f"{cfg.clocks.cap_drop_ratio:g} x {base / 1e6:.0f} MHz allowed earlier"))
            if cfg.clocks.min_ratio is not None and clock.ratio < cfg.clocks.min_ratio:
                found.append((2, f"clock low: {name} at {clock.ratio:.0%} of max < {cfg.clocks.min_ratio:.0%}"))
        headroom = s.memory_headroom
        if cfg.memory_headroom_warm is not None and headroom is not None and headroom < cfg.memory_headroom_warm:
            found.append((1, f"memory headroom {headroom:.1%} < {cfg.memory_headroom_warm:.0%}"))
        return found

    def assess(self, s: HealthSample) -> tuple[Assessment, Assessment]:
        """(up, down): the level the sample calls for, and the lowest level it allows."""
        common = self._missing(s) + self._flags_clocks_memory(s)
        up = _pick(self._temperatures(s, 0.0) + common)
        down = _pick(self._temperatures(s, self.cfg.hysteresis_c) + common)
        self._remember(s)
        return up, down

    def _remember(self, s: HealthSample) -> None:
        for zone, c in s.temperatures_c.items():
            if not self._ignored(zone):
                lv = zone_thresholds(zone, self.cfg, dict(s.trip_points_c.get(zone, {})))
                self._zone_level[zone] = next((lvl for lvl in (3, 2, 1) if c >= lv[lvl - 1]), 0)
        if s.power_mode != self._power_mode:
            self._power_mode, self._caps = s.power_mode, {}  # a new power mode caps clocks on purpose
        for name, clock in s.clocks.items():
            if clock.cap_hz is not None:
                self._caps[name] = max(self._caps.get(name, 0.0), clock.cap_hz)
