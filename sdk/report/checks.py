"""Readiness checks: thresholds a shadow trial must meet before anyone considers `--live`.

Passing them does not make a policy safe (the safety filter and the person at the e-stop do
that); failing one says where this trial fell short, with the number. A check with no data (or
no threshold given, for tracking) is reported as not evaluated, never as passed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

LIMIT_TOLERANCE = 1.01  # logs round positions to 1e-7: velocities/accelerations recomputed from them wobble


@dataclass(frozen=True)
class Thresholds:
    min_coverage: float = 0.95  # share of ticks with a policy target, after the first target
    max_intervention_share: float = 0.01  # ticks the filter changed the command / ticks with a target
    max_late_tick_share: float = 0.001  # control ticks that started over one period late
    max_age_share_of_chunk: float = 0.5  # p95 chunk age at arrival / the chunk's duration
    max_tracking_error_rad: float | None = None  # p95 |policy - actual| over all joints; None: report only


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: not evaluated (no data, or no threshold)
    value: Any
    threshold: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at_most(name: str, value: float | None, limit: float | None, threshold: str, why: str) -> Check:
    passed = None if value is None or limit is None else bool(value <= limit)
    return Check(name, passed, value, threshold, why)


def _peak(shares: dict[str, float | None]) -> float | None:
    values = [v for v in shares.values() if v is not None]
    return max(values) if values else None


def readiness_checks(report: dict[str, Any], th: Thresholds) -> list[Check]:
    timing, cov, safety, tracking = report["timing"], report["coverage"], report["safety"], report["tracking"]
    ticks = timing["ticks"]
    age_p95 = (timing["chunks"].get("age_at_arrival_ms") or {}).get("p95")
    chunk_ms = timing.get("chunk_duration_ms")
    stops = None if safety["safety_stops"] is None else safety["safety_stops"] + safety["estopped_ticks"]
    watchdogs = None if None in safety["watchdogs"].values() else sum(safety["watchdogs"].values())
    critical_s = report["health"]["seconds_by_state"].get("critical", 0.0)
    return [
        Check("coverage", cov["share_after_first_target"] >= th.min_coverage,
              cov["share_after_first_target"], f">= {th.min_coverage:g}",
              "share of control ticks with a policy target after the first one; the rest the arm holds still"),
        _at_most("interventions", safety["intervention_share_of_target_ticks"], th.max_intervention_share,
                 f"<= {th.max_intervention_share:g}", "share of ticks with a target on which the safety filter changed it"),
        _at_most("safety_stops", stops, 0, "= 0", "safety_stop events and e-stopped ticks: the filter refused to go on"),
        _at_most("watchdogs", watchdogs, 0, "= 0", "inference or control watchdog trips"),
        _at_most("filter_velocity", _peak(safety["peak_velocity_share_of_limit"]), LIMIT_TOLERANCE, "<= 1 (1% log rounding)",
                 "peak filtered joint velocity / operating limit, recomputed from the log: checks the filter itself"),
        _at_most("filter_acceleration", _peak(safety["peak_acceleration_share_of_limit"]), LIMIT_TOLERANCE,
                 "<= 1 (1% log rounding)", "peak filtered joint acceleration / operating limit, recomputed from the log"),
        _at_most("late_ticks", timing["late_ticks"] / ticks, th.max_late_tick_share, f"<= {th.max_late_tick_share:g}",
                 "share of control ticks that started more than one period late"),
        _at_most("chunk_age", None if age_p95 is None or not chunk_ms else age_p95 / chunk_ms,
                 th.max_age_share_of_chunk, f"<= {th.max_age_share_of_chunk:g}",
                 "p95 age of a chunk on arrival / the time the chunk covers: how much of each plan is already past"),
        _at_most("health_critical_s", critical_s, 0.0, "= 0", "seconds spent in the critical health state"),
        _at_most("tracking_p95_rad", (tracking["policy_vs_actual"] or {}).get("p95_all_joints"),
                 th.max_tracking_error_rad,
                 "not set" if th.max_tracking_error_rad is None else f"<= {th.max_tracking_error_rad:g} rad",
                 "p95 |policy command - measured joints| (shadow: vs the operator's motion)" + _tracking_note(tracking, th)),
    ]


def _tracking_note(tracking: dict[str, Any], th: Thresholds) -> str:
    if tracking["policy_vs_actual"] is None:
        return "; the arm did not move during this shadow run, so there is nothing to compare against"
    return "; pass --max-tracking-error to judge it" if th.max_tracking_error_rad is None else ""


def verdict(checks: list[Check]) -> str:
    failed = [c.name for c in checks if c.passed is False]
    skipped = [c.name for c in checks if c.passed is None]
    if failed:
        return f"NOT READY: {len(failed)} check(s) failed ({', '.join(failed)})"
    return "all evaluated checks passed" + (f" ({len(skipped)} not evaluated: {', '.join(skipped)})" if skipped else "")
