"""What a run's logs say about the policy, computed from the logs alone.

Four questions an engineer asks before letting a policy move an arm, answered per run:
  timing    did targets arrive in time (latency, age at arrival, share of each chunk already past)?
  coverage  on how many control ticks did the policy have a target at all?
  safety    how often would the safety filter have changed or refused the policy's command, and
            does the filtered track stay inside the configured velocity/acceleration limits?
  tracking  how far is the policy's command from where the arm actually was (in shadow mode: the
            arm moved by its operator or existing program, i.e. the policy's disagreement with it)?
Every number is recomputed from ticks.jsonl / chunks.jsonl; summary.json only fills in counts
the logs rate-limit (events written the first 20 times).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .rundata import NOT_AN_INTERVENTION, RunData

MOVED_RAD = 1e-3  # an arm whose measured joints span less than this did not move during the run
RUNNING_STATES = ("running", "braking")


def _stats(values: np.ndarray, *quantiles: int) -> dict[str, float | None]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {**{f"p{q}": None for q in quantiles}, "max": None}
    return {**{f"p{q}": float(np.percentile(values, q)) for q in quantiles}, "max": float(values.max())}


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest stretch of consecutive True values."""
    best = cur = 0
    for value in mask:
        cur = cur + 1 if value else 0
        best = max(best, cur)
    return best


def timing(run: RunData) -> dict[str, Any]:
    ticks, period = run.ticks, run.control_period_s
    chunks = run.chunks or []
    latency = np.array([c.get("latency_ms", np.nan) for c in chunks], dtype=float)
    age = np.array([c.get("age_ms", np.nan) for c in chunks], dtype=float)
    rows = sum(int(c.get("rows") or 0) for c in chunks)
    dropped = sum(int(c.get("rows_dropped") or 0) for c in chunks)
    policy_period = float((run.config.get("policy") or {}).get("control_period_s") or period)
    horizon = (run.config.get("policy") or {}).get("horizon")
    summary = run.summary or {}
    result = {
        "ticks": len(ticks),
        "duration_s": float(ticks.t[-1] - ticks.t[0] + period),
        "control_period_ms": period * 1e3,
        "tick_work_ms": _stats(ticks.tick_ms, 50, 99),
        "late_ticks": int(np.sum(ticks.late_ms > period * 1e3)),
        "control_overruns": summary.get("control_overruns"),
        "chunk_duration_ms": None if horizon is None else float(horizon) * policy_period * 1e3,
    }
    if run.chunks is None:  # an older run directory: only the summary's aggregate numbers exist
        result["chunks"] = {"source": "summary.json", **(summary.get("chunks") or {}),
                            "latency_ms": summary.get("inference_latency_ms"),
                            "age_at_arrival_ms": summary.get("chunk_age_at_arrival_ms")}
        return result
    result["chunks"] = {
        "source": "chunks.jsonl", "received": len(chunks),
        "rejected": sum(1 for c in chunks if not c.get("accepted")),
        "rejected_reasons": dict(Counter(str(c.get("reason")) for c in chunks if not c.get("accepted"))),
        "latency_ms": _stats(latency, 50, 95), "age_at_arrival_ms": _stats(age, 50, 95),
        # observation capture and hand-over: what the policy's own latency does not include
        "age_minus_latency_ms": _stats(age - latency, 50, 95),
        "rows_past_on_arrival": None if rows == 0 else dropped / rows,
    }
    return result


def coverage(run: RunData) -> dict[str, Any]:
    ticks = run.ticks
    has_target = ticks.has_target
    first = int(np.argmax(has_target)) if has_target.any() else len(ticks)
    after_first = has_target[first:]
    return {
        "ticks_with_target": int(has_target.sum()),
        "first_target_s": None if first == len(ticks) else float(ticks.t[first] - ticks.t[0]),
        # a run in which the policy never produced a target has coverage 0 (a failure), not "no data"
        "share_after_first_target": 0.0 if after_first.size == 0 else float(after_first.mean()),
        "longest_gap_s": float((_longest_run(~after_first) if after_first.size else len(ticks)) * run.control_period_s),
        "ticks_held": int(ticks.held.sum()),
    }


def _filtered_motion(run: RunData) -> tuple[list[float | None], list[float | None]]:
    """Peak |velocity| / limit and |acceleration| / limit per joint of the filtered track, over
    consecutive ticks on which the filter was running or braking (a resume re-anchors the track at
    the measured position, which is not a motion). Limits are the operating limits in config.yaml
    with the tick's velocity scale, as the filter applies them."""
    ticks, dt = run.ticks, run.control_period_s
    limits = run.config["robot"].get("limits") or {}
    joints = len(run.joints)
    v_lim = np.asarray(limits.get("velocity") or [np.inf] * joints, dtype=float)
    a_lim = np.asarray(limits.get("acceleration") or [np.inf] * joints, dtype=float)
    moving = np.array([s in RUNNING_STATES for s in ticks.filter_state])
    f = ticks.filtered
    v = np.full_like(f, np.nan)
    pair = moving[1:] & moving[:-1]
    v[1:][pair] = (f[1:][pair] - f[:-1][pair]) / dt
    a = np.full_like(f, np.nan)
    both = np.isfinite(v[1:]).all(axis=1) & np.isfinite(v[:-1]).all(axis=1)
    a[1:][both] = (v[1:][both] - v[:-1][both]) / dt
    scale = np.clip(ticks.velocity_scale, 1e-9, None)[:, None]
    v_ratio = np.abs(v) / (v_lim[None, :] * scale)
    a_ratio = np.abs(a) / a_lim[None, :]
    return _column_peaks(v_ratio), _column_peaks(a_ratio)


def _column_peaks(values: np.ndarray) -> list[float | None]:
    return [float(np.nanmax(col)) if np.isfinite(col).any() else None for col in values.T]


def safety(run: RunData) -> dict[str, Any]:
    ticks = run.ticks
    has_target, intervened = ticks.has_target, ticks.intervened
    by_code = Counter(c for codes in ticks.codes for c in codes if c != NOT_AN_INTERVENTION)
    delta = np.abs(ticks.filtered - ticks.commanded)
    delta_peak = _column_peaks(delta)
    v_peak, a_peak = _filtered_motion(run)
    kinds = Counter(str(e.get("event")) for e in run.events or [])
    counted = (run.summary or {}).get("events") or {}
    events = {k: max(int(counted.get(k, 0)), kinds.get(k, 0)) for k in set(kinds) | set(counted)}
    return {
        "ticks_with_intervention": int(intervened.sum()),
        "intervention_share_of_target_ticks": None if not has_target.any()
        else float(np.sum(intervened & has_target) / has_target.sum()),
        "interventions_by_code": dict(by_code.most_common()),
        # unknown (None, "not evaluated") rather than 0 when the run left no event log at all
        "safety_stops": int(events.get("safety_stop", 0)) if run.events_known else None,
        "estopped_ticks": sum(1 for s in ticks.filter_state if s == "estopped"),
        "watchdogs": {k: int(events.get(k, 0)) if run.events_known else None
                      for k in ("inference_watchdog", "control_watchdog")},
        "max_abs_filter_delta": dict(zip(run.joints, delta_peak)),
        "peak_velocity_share_of_limit": dict(zip(run.joints, v_peak)),
        "peak_acceleration_share_of_limit": dict(zip(run.joints, a_peak)),
        "events": dict(sorted(events.items())),
    }


def _error_stats(a: np.ndarray, b: np.ndarray, joints: list[str]) -> dict[str, Any] | None:
    err = np.abs(a - b)
    rows = np.all(np.isfinite(err), axis=1)
    if not rows.any():
        return None
    err = err[rows]
    return {"ticks": int(rows.sum()),
            "per_joint": {name: {"mean": float(col.mean()), "p95": float(np.percentile(col, 95)), "max": float(col.max())}
                          for name, col in zip(joints, err.T)},
            "p95_all_joints": float(np.percentile(err, 95))}


def tracking(run: RunData) -> dict[str, Any]:
    ticks = run.ticks
    finite = ticks.actual[np.all(np.isfinite(ticks.actual), axis=1)]
    span = float(np.max(finite.max(axis=0) - finite.min(axis=0))) if len(finite) else 0.0
    moved = span >= MOVED_RAD
    return {
        "arm_moved": moved,
        "actual_span_rad": span,
        # shadow: the policy's command vs the arm moved by its operator; live: vs the arm it drove
        "policy_vs_actual": _error_stats(ticks.commanded, ticks.actual, run.joints) if moved or not run.shadow else None,
        # live only: how well the arm followed what the filter sent
        "sent_vs_actual": None if run.shadow else _error_stats(ticks.filtered, ticks.actual, run.joints),
    }


def health(run: RunData) -> dict[str, Any]:
    ticks = run.ticks
    seconds = Counter()
    for state in ticks.health:
        seconds[state] += run.control_period_s
    changes = [{"t": e.get("t"), "state": e.get("state"), "reason": e.get("reason")}
               for e in run.events or [] if e.get("event") == "health"]
    return {"seconds_by_state": {k: round(v, 3) for k, v in seconds.items()},
            "min_velocity_scale": float(np.min(ticks.velocity_scale)),
            "changes": changes}


def execution_notes(policy: dict[str, Any]) -> list[str]:
    """A GPU target's path (engines / ggml-CUDA fallback), said in the report when it was not the
    target's own engines; a development fallback on other hardware is marked as such."""
    backend = policy.get("backend") or {}
    if backend.get("path") != "fallback" or backend.get("target") == "cuda":
        return []
    mark = "DEVELOPMENT FALLBACK on other hardware: " if backend.get("development_fallback") else ""
    return [f"{mark}target {backend.get('target')} ran ggml-CUDA, not its engines: {backend.get('path_note')}"]


def analyse(run: RunData) -> dict[str, Any]:
    policy = run.config.get("policy") or {}
    return {
        "run_dir": str(run.path),
        "mode": "shadow" if run.shadow else "live",
        "robot": run.config["robot"].get("name"),
        "pack": policy.get("pack_name"),
        "target": policy.get("target") or run.config.get("target"),
        "quant_recipe": policy.get("quant_recipe"),
        "prompt": run.config.get("prompt"),
        "end_reason": (run.summary or {}).get("end_reason"),
        "joints": run.joints,
        "timing": timing(run),
        "coverage": coverage(run),
        "safety": safety(run),
        "tracking": tracking(run),
        "health": health(run),
        "notes": execution_notes(policy) + list(run.notes),
    }
