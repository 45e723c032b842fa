"""The UR3 motion path: servoJ streaming through ur_rtde's RTDEControlInterface.

A port is bound to the link it was opened on. If that link is lost or replaced (the receive
stream dropped, the control socket disconnected, the controller refused a command, an
emergency stop), the port is dead for good: every later command raises and nothing is sent.
ur_rtde reconnects its control socket on its own; the port never trusts such a reconnection,
so motion can only restart through a new, explicit `open_motion()` by the caller.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from ...errors import VlaEdgeError
from ..base import MotionPort
from .connection import UR3Connection


class MotionLinkLost(VlaEdgeError):
    """The motion path is gone; the caller must stop its loop and open a new one explicitly."""


class URMotionPort(MotionPort):
    """Streams filtered joint targets with servoJ at a controller-timed period."""

    def __init__(
        self,
        control: Any,
        settings: UR3Connection,
        period_s: float,
        link_ok: Callable[[], str | None],
        on_dead: Callable[["URMotionPort"], None],
    ):
        self._control = control
        self._settings = settings
        self._period_s = period_s
        self._link_ok = link_ok  # returns None if the link is intact, else why not
        self._on_dead = on_dead
        self._lock = threading.RLock()
        self._dead_reason: str | None = None
        self._last_cycle: Any = None
        self._watchdog_armed = False
        self.commands_sent = 0

    @property
    def dead_reason(self) -> str | None:
        return self._dead_reason

    def _die(self, reason: str) -> MotionLinkLost:
        if self._dead_reason is None:
            self._dead_reason = reason
            self._on_dead(self)
        return MotionLinkLost(f"UR3 motion stopped and disabled: {reason}. Open motion again explicitly to resume.")

    def command_joints(self, q_target: np.ndarray) -> None:
        q = np.asarray(q_target, dtype=float)
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise VlaEdgeError(f"UR3 command_joints: expected 6 finite joint angles (rad), got {q_target!r}")
        with self._lock:
            if self._dead_reason is not None:
                raise MotionLinkLost(f"UR3 motion is disabled: {self._dead_reason}")
            problem = self._link_ok() or (None if self._control.isConnected() else "control connection lost")
            if problem:
                raise self._die(problem)
            s = self._settings
            try:
                if not self._watchdog_armed and s.watchdog_min_hz > 0:
                    if not self._control.setWatchdog(s.watchdog_min_hz):
                        raise self._die("controller refused setWatchdog (control script not running?)")
                    self._watchdog_armed = True
                if self._last_cycle is not None:
                    self._control.waitPeriod(self._last_cycle)  # controller-timed pacing across calls
                self._last_cycle = self._control.initPeriod()
                ok = self._control.servoJ(
                    [float(v) for v in q], s.servo_speed, s.servo_acceleration, self._period_s,
                    s.lookahead_time, s.gain,
                )
            except (RuntimeError, ValueError) as exc:
                raise self._die(f"servoJ failed: {exc}") from None
            if not ok:
                raise self._die("controller refused servoJ (control script stopped, protective or emergency stop)")
            self.commands_sent += 1

    def stop(self) -> None:
        """servoStop then stopJ with the configured deceleration; a dead link cannot be commanded,
        in which case the controller's own behaviour (hold last target / watchdog) applies."""
        with self._lock:
            if self._dead_reason is not None or not self._control.isConnected():
                return
            decel = self._settings.stop_deceleration
            try:
                self._control.servoStop(decel)
                self._control.stopJ(decel, False)
            except RuntimeError as exc:
                raise self._die(f"stop failed: {exc}") from None
            self._last_cycle = None

    def emergency_stop(self) -> None:
        """Protective stop (needs a human to unlock on the pendant), falling back to the
        fastest stopJ ur_rtde accepts. The port is dead afterwards either way."""
        with self._lock:
            if self._control.isConnected():
                try:
                    if not self._control.triggerProtectiveStop():
                        self._control.stopJ(40.0, False)
                except RuntimeError:
                    pass
            self._die("emergency stop")

