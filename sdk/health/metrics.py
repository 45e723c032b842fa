"""RunMetrics: the run's operational metrics, per window (metrics.jsonl) and for the whole run.

It is a `LoopStats` (same four calls: tick, chunk, event, summary), so the run loop records into
it without knowing; `summary()` adds a `metrics` section to summary.json. Time is counted in
control ticks (seconds = ticks x control period), which is exact in simulated time and the
nominal schedule in real time. Definitions, units and windows are in docs/health.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..run.rundir import _plain
from ..run.stats import LoopStats, _pct
from .config import STATES

_DEGRADED = ("throttled", "critical")


def _stats(values: Sequence[float], *qs: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {f"p{q}": _pct(list(values), q) for q in qs}
    out["max"] = max(values) if len(values) else None
    return out


class _Window:
    """Raw per-tick values of one window (or of the whole run)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.latency_ms: list[float] = []
        self.action_delta: list[float] = []
        self.eef_speed: list[float] = []
        self.joint_speed: list[float] = []
        self.gripper_switches = 0
        self.health_ticks: Counter[str] = Counter()
        self.throttle_events = 0
        self.events: Counter[str] = Counter()


class RunMetrics(LoopStats):
    def __init__(self, period_s: float, n_dof: int, gripper_ranges: dict[int, tuple[float, float]] | None = None,
                 kinematics: Any = None, cameras: dict[str, Any] | None = None, out: Path | None = None,
                 window_s: float = 1.0):
        super().__init__()
        self.period = float(period_s)
        self.grippers = dict(gripper_ranges or {})
        self.arm = np.array([i not in self.grippers for i in range(n_dof)], dtype=bool)
        self.kin = kinematics
        self.cameras = cameras or {}
        self.out = out
        self.window_ticks = max(1, int(round(window_s / self.period)))
        self._win, self._run = _Window(), _Window()
        self._n_windows = 0
        self._prev_target: np.ndarray | None = None
        self._prev_cmd: np.ndarray | None = None
        self._prev_moving = False
        self._pairs: list[tuple[np.ndarray, np.ndarray]] = []  # (previous, current) commands, FK at flush
        self._gripper_closed: dict[int, bool | None] = {i: None for i in self.grippers}
        self._health: str | None = None
        self._cam_start = self._cam_base = self._camera_totals()  # frames taken before the run (warm-up)
        self._file = None

    @classmethod
    def for_robot(cls, config: Any, cameras: dict[str, Any] | None = None, out: Path | None = None,
                  window_s: float = 1.0) -> "RunMetrics":
        """From a RobotConfig: control period, grippers (opening ranges) and kinematics for TCP speed."""
        from ..robots.kinematics import RobotKinematics  # noqa: PLC0415

        ranges = {g.index: (float(g.range[0]), float(g.range[1])) for g in config.grippers}
        return cls(1.0 / config.control_rate_hz, len(config.joints), ranges, RobotKinematics(config.kinematics),
                   cameras, out, window_s)

    # ------------------------------------------------------------------ the four calls

    def tick(self, target, command, sent, held, codes, tick_ms, health, filter_state=None) -> None:  # noqa: D102
        super().tick(target, command, sent, held, codes, tick_ms, health, filter_state)
        for w in (self._win, self._run):
            w.ticks += 1
            w.health_ticks[health] += 1
        if self._health is not None and health != self._health and health in _DEGRADED \
                and STATES.index(health) > STATES.index(self._health):
            self._win.throttle_events += 1
            self._run.throttle_events += 1
        self._health = health
        self._record_target(None if target is None else np.asarray(target, dtype=float))
        self._record_command(None if command is None else np.asarray(command, dtype=float), filter_state)
        if self._win.ticks >= self.window_ticks:
            self._flush()

    def chunk(self, accepted, latency_ms, age_ms, rows_dropped) -> None:  # noqa: D102
        super().chunk(accepted, latency_ms, age_ms, rows_dropped)
        self._win.latency_ms.append(float(latency_ms))
        self._run.latency_ms.append(float(latency_ms))

    def event(self, kind: str) -> None:  # noqa: D102
        super().event(kind)
        self._win.events[kind] += 1
        self._run.events[kind] += 1

    def summary(self) -> dict[str, Any]:
        if self._win.ticks:
            self._flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        out = super().summary()
        totals = self._camera_totals()
        out["metrics"] = {**self._metrics(self._run, totals, self._cam_start), "windows": self._n_windows,
                          "window_s": self.window_ticks * self.period,
                          "velocity_source": "filtered commands (sent, or in shadow mode would-be sent)"}
        return out

    # ------------------------------------------------------------------ per tick

    def _record_target(self, target: np.ndarray | None) -> None:
        prev, self._prev_target = self._prev_target, target
        if target is None:
            return
        if prev is not None and prev.shape == target.shape:
            d = float(np.linalg.norm((target - prev)[self.arm]))
            self._win.action_delta.append(d)
            self._run.action_delta.append(d)
        for i, (lo, hi) in self.grippers.items():
            if i >= target.shape[0]:
                continue
            frac = (target[i] - lo) / (hi - lo) if hi > lo else 0.0
            # 40/60 % band: a command wobbling around the middle is not a switch.
            closed = True if frac < 0.4 else False if frac > 0.6 else self._gripper_closed[i]
            if closed is not None and self._gripper_closed[i] is not None and closed != self._gripper_closed[i]:
                self._win.gripper_switches += 1
                self._run.gripper_switches += 1
            self._gripper_closed[i] = closed

    def _record_command(self, cmd: np.ndarray | None, filter_state: str | None) -> None:
        """Velocity between consecutive commands of a moving filter. After a stop the filter
        restarts from the measured position, so the step from the last command before the stop
        is not a motion (in shadow mode the arm never moved) and is not counted."""
        prev, self._prev_cmd = self._prev_cmd, cmd
        moving, self._prev_moving = self._prev_moving, filter_state in (None, "running", "braking")
        if cmd is None or prev is None or prev.shape != cmd.shape or not moving:
            return
        speed = float(np.max(np.abs(cmd - prev)[self.arm], initial=0.0)) / self.period
        self._win.joint_speed.append(speed)
        self._run.joint_speed.append(speed)
        if self.kin is not None:
            self._pairs.append((prev, cmd))

    # ------------------------------------------------------------------ windows

    def _eef_speeds(self) -> list[float]:
        if not self._pairs:
            return []
        a = np.stack([p for p, _ in self._pairs])
        b = np.stack([c for _, c in self._pairs])
        self._pairs = []
        dist = np.linalg.norm(self.kin.tcp_positions(b) - self.kin.tcp_positions(a), axis=-1)  # (B, arms)
        return (dist.max(axis=1) / self.period).tolist()

    def _camera_totals(self) -> tuple[int, int]:
        frames = sum(int(getattr(c.stats, "frames", 0)) for c in self.cameras.values())
        dropped = sum(int(getattr(c.stats, "dropped", 0)) for c in self.cameras.values())
        return frames, dropped

    def _flush(self) -> None:
        speeds = self._eef_speeds()
        self._win.eef_speed.extend(speeds)
        self._run.eef_speed.extend(speeds)
        totals = self._camera_totals()
        line = {"window": self._n_windows, "t_start_s": self._n_windows * self.window_ticks * self.period,
                **self._metrics(self._win, totals, self._cam_base)}
        self._cam_base = totals
        self._n_windows += 1
        self._win = _Window()
        if self.out is not None:
            if self._file is None:
                self._file = open(self.out, "w")
            self._file.write(json.dumps(_plain(line), separators=(",", ":")) + "\n")
            self._file.flush()

    def _metrics(self, w: _Window, cams: tuple[int, int], cam_base: tuple[int, int]) -> dict[str, Any]:
        seconds = w.ticks * self.period
        frames, dropped = cams[0] - cam_base[0], cams[1] - cam_base[1]
        return {
            "duration_s": seconds,
            "ticks": w.ticks,
            "policy_latency_ms_p50": _pct(w.latency_ms, 50),
            "policy_latency_ms_p95": _pct(w.latency_ms, 95),
            "chunks": len(w.latency_ms),
            "action_delta_l2": {"mean": float(np.mean(w.action_delta)) if w.action_delta else None,
                                **_stats(w.action_delta, 95)},
            "eef_velocity": _stats(w.eef_speed, 50, 95) if self.kin is not None else None,
            "joint_velocity_max": max(w.joint_speed) if w.joint_speed else None,
            "gripper_command_switch_rate": (w.gripper_switches / seconds if seconds else 0.0) if self.grippers else None,
            "camera_frame_drop_rate": dropped / (frames + dropped) if frames + dropped else None,
            "controller_watchdog_reset_count": w.events["control_watchdog"],
            "inference_watchdog_count": w.events["inference_watchdog"],
            "health_state_s": {s: w.health_ticks[s] * self.period for s in STATES if w.health_ticks[s]},
            "throttle_events": w.throttle_events,
        }
