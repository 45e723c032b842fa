"""One plain sentence on what the arm did in a run, from its logs: the last line of `vla-edge run`
and the headline of report.html. A run where the arm only held says so."""

from __future__ import annotations

from typing import Any

import numpy as np

from .analysis import MOVED_RAD
from .rundata import RunData


def _span(values: np.ndarray) -> float:
    rows = values[np.all(np.isfinite(values), axis=1)]
    return float(np.max(rows.max(axis=0) - rows.min(axis=0))) if len(rows) else 0.0


def arm_only_held(run: RunData) -> bool:
    """True when the filtered command (what moved, or in shadow mode would have moved, the arm)
    never changed by MOVED_RAD: the policy's commands did not move the arm at all."""
    return _span(run.ticks.filtered) < MOVED_RAD


def what_the_arm_did(run: RunData, entry: dict[str, Any] | None = None) -> str:
    """e.g. 'SHADOW: the measured arm was moved 0.50 rad by its operator; the policy's commands (the
    ghost: what the filter would have sent) would have moved it up to 0.52 rad, within p95 0.06 rad
    of it; the safety filter changed 0.0% of its commands'."""
    from .analysis import safety, tracking

    ticks = run.ticks
    moved_cmd = _span(ticks.filtered)
    moved_arm = _span(ticks.actual)
    safe = (entry or {}).get("safety") or safety(run)
    track = (entry or {}).get("tracking") or tracking(run)
    share = safe["intervention_share_of_target_ticks"]
    changed = "" if share is None else f"; the safety filter changed {100 * share:.1f}% of its commands"
    if not ticks.has_target.any():
        return "the policy never delivered a target in time: the arm only held" + (
            "" if moved_arm < MOVED_RAD else f" (it was moved {moved_arm:.2f} rad by someone else)")
    if run.shadow:
        policy = ("the arm only held: the policy's commands, which the filter would have sent, never moved it"
                  if moved_cmd < MOVED_RAD else
                  f"the policy's commands (the ghost: what the filter would have sent) would have moved it up to {moved_cmd:.2f} rad")
        if moved_arm >= MOVED_RAD:
            errors = track.get("policy_vs_actual") or {}
            close = f", within p95 {errors['p95_all_joints']:.2f} rad of it" if errors.get("p95_all_joints") is not None else ""
            return (f"SHADOW: the measured arm was moved {moved_arm:.2f} rad by its operator; "
                    f"{policy}{close}{changed}")
        return f"SHADOW: the measured arm stayed still; {policy}{changed}"
    if moved_cmd < MOVED_RAD:
        return f"LIVE: the arm only held; the policy's commands never moved it{changed}"
    return f"LIVE: the policy moved the arm up to {moved_cmd:.2f} rad{changed}"
