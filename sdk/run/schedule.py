"""When each row of an action chunk is executed, at the robot's control rate.

A chunk's row i is meant for t_i = chunk.timestamp + i * period (the observation's capture time
plus the policy's action spacing). Between rows the target is interpolated linearly. Because
inference takes time, part of a new chunk is already in the past when it arrives: those rows are
dropped (latency compensation), and the robot joins the chunk where it is *now*. Past the last
row there is no target (None): the schedule never extrapolates, the safety filter holds instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Segment:
    times: np.ndarray  # (n,) absolute seconds, increasing
    rows: np.ndarray  # (n, dof) robot-ordered targets
    chunk_id: int

    def covers(self, t: float) -> bool:
        return bool(self.times[0] <= t <= self.times[-1])

    def at(self, t: float) -> np.ndarray:
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        i = min(max(i, 0), len(self.times) - 2) if len(self.times) > 1 else 0
        if len(self.times) == 1:
            return self.rows[0].copy()
        t0, t1 = self.times[i], self.times[i + 1]
        w = 0.0 if t1 <= t0 else (t - t0) / (t1 - t0)
        return (1.0 - w) * self.rows[i] + w * self.rows[i + 1]


@dataclass(frozen=True)
class UpdateResult:
    accepted: bool
    dropped_rows: int  # rows already in the past when the chunk arrived
    reason: str = ""


class ActionSchedule:
    """Holds the chunk being executed; `target_at(now)` is what the filter is asked to follow.

    blend_s > 0 cross-fades from the previous chunk to a new one over that many seconds (both
    interpolated at the same instant), which avoids a step when consecutive chunks disagree. The
    weight follows smoothstep (3s^2 - 2s^3), so the target's velocity has no step at either end
    of the fade either (a linear fade would ask for one velocity jump at each end)."""

    def __init__(self, blend_s: float = 0.0):
        self.blend_s = max(0.0, float(blend_s))
        self._cur: _Segment | None = None
        self._prev: _Segment | None = None
        self._switch_t = 0.0
        self._next_id = 0

    @property
    def chunk_id(self) -> int | None:
        return None if self._cur is None else self._cur.chunk_id

    @property
    def end_time(self) -> float | None:
        """Time of the current chunk's last row (after which target_at is None)."""
        return None if self._cur is None else float(self._cur.times[-1])

    def update(self, rows: np.ndarray, timestamp: float, period_s: float, now: float,
               hold: np.ndarray | None = None) -> UpdateResult:
        """Install a new chunk (robot-ordered rows); rows whose time has passed are dropped, keeping
        the one just before `now` so the target at `now` is an interpolation, not a jump. `hold`:
        where the arm is held when no chunk is running (the first chunk, with blend_s > 0, fades
        in from there instead of starting with a step)."""
        rows = np.asarray(rows, dtype=float)
        if rows.ndim != 2 or rows.shape[0] == 0 or not period_s > 0:
            return UpdateResult(False, 0, f"bad chunk: rows shape {rows.shape}, period {period_s}")
        times = timestamp + period_s * np.arange(rows.shape[0])
        if times[-1] < now:
            return UpdateResult(False, rows.shape[0], f"whole chunk is in the past ({now - times[-1]:.3f} s late)")
        first = max(int(np.searchsorted(times, now, side="right")) - 1, 0)
        seg = _Segment(times[first:], rows[first:], self._next_id)
        self._next_id += 1
        self._prev = self._cur
        if self._prev is None and hold is not None and self.blend_s > 0:
            still = np.repeat(np.asarray(hold, dtype=float)[None], 2, axis=0)
            self._prev = _Segment(np.array([min(timestamp, now), now + self.blend_s]), still, -1)
        self._cur = seg
        self._switch_t = now
        return UpdateResult(True, first)

    def target_at(self, now: float) -> np.ndarray | None:
        """Interpolated target for `now`, or None when no chunk covers it (hold)."""
        cur, prev = self._cur, self._prev
        if cur is None:
            return None
        if not cur.covers(now):
            # A chunk whose first row is still in the future: keep following the previous one.
            if prev is not None and now < cur.times[0] and prev.covers(now):
                return prev.at(now)
            return None
        target = cur.at(now)
        if self.blend_s > 0 and prev is not None and prev.times[0] <= now < self._switch_t + self.blend_s:
            # A previous chunk that ends during the fade fades out from its last row (cutting
            # the fade short would be a step in the target).
            s = min(max((now - self._switch_t) / self.blend_s, 0.0), 1.0)
            w = s * s * (3.0 - 2.0 * s)
            before = prev.at(now) if prev.covers(now) else prev.rows[-1]
            target = (1.0 - w) * before + w * target
        return target

    def clear(self) -> None:
        """Forget every chunk (critical health, stop): target_at returns None from now on."""
        self._cur = self._prev = None
