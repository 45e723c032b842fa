"""The UR3 motion path: servoJ streaming through ur_rtde's control interface (in a worker process).

A port is bound to the link it was opened on. If that link is lost or replaced (the receive
stream dropped or went stale, the control script stopped, the control worker failed or timed
out, the controller refused a command, an emergency stop), the port is dead for good: every
later command raises and nothing is sent. The driver then kills the control worker, so ur_rtde's
own reconnect logic never gets to run; motion restarts only through a new, explicit
`open_motion()` by the caller.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from ...errors import VlaEdgeError
from ..base import MotionPort
from .connection import UR3Connection
from .control_process import ControlProcess, ControlWorkerError


class MotionLinkLost(VlaEdgeError):
    """The motion path is gone; the caller must stop its loop and open a new one explicitly."""


class URMotionPort(MotionPort):
    """Streams filtered joint targets with servoJ; the worker paces them with ur_rtde's
    controller-timed initPeriod/waitPeriod."""

    def __init__(
        self,
        control: ControlProcess,
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
        self._tripped: str | None = None  # set lock-free by the link monitor, acted on under the lock
        self._watchdog_armed = False
        self.commands_sent = 0

    @property
    def dead_reason(self) -> str | None:
        return self._dead_reason

    def trip(self, reason: str) -> None:
        """Mark the link broken without waiting for the lock (callable from any thread); the
        next command raises, and `kill` finishes the job."""
        if self._tripped is None:
            self._tripped = reason

    def kill(self, reason: str) -> None:
        """Disable the port now (the driver then kills the control worker)."""
        self.trip(reason)
        with self._lock:
            self._die(reason)

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
            problem = self._tripped or self._link_ok()
            if problem:
                raise self._die(problem)
            s = self._settings
            try:
                if not self._control.isConnected():
                    raise self._die("control connection lost")
                if not self._watchdog_armed and s.watchdog_min_hz > 0:
                    if not self._control.setWatchdog(s.watchdog_min_hz):
                        raise self._die("controller refused setWatchdog (control script not running?)")
                    self._watchdog_armed = True
                ok = self._control.servoJ(
                    [float(v) for v in q], s.servo_speed, s.servo_acceleration, self._period_s,
                    s.lookahead_time, s.gain,
                )
            except ControlWorkerError as exc:
                raise self._die(f"control worker: {exc}") from None
            if not ok:
                raise self._die("controller refused servoJ (control script stopped, protective or emergency stop)")
            self.commands_sent += 1

    def stop(self) -> None:
        """servoStop then stopJ with the configured deceleration. A dead link cannot be commanded;
        then the controller's own behaviour applies (the script holds the last target, or the
        RTDE watchdog stops it if `watchdog_min_hz` is set)."""
        with self._lock:
            if self._dead_reason is not None:
                return
            decel = self._settings.stop_deceleration
            try:
                self._control.servoStop(decel)
                self._control.stopJ(decel, False)
            except ControlWorkerError as exc:
                raise self._die(f"stop failed: {exc}") from None

    def close(self) -> None:
        """End of the motion session: controlled stop and end of the control script (done by the
        worker, which then exits). Idempotent."""
        with self._lock:
            if self._dead_reason is not None:
                return
            try:
                self._control.close(self._settings.stop_deceleration)
            except ControlWorkerError as exc:
                raise self._die(f"controlled stop at close could not be confirmed ({exc})") from None
            self._die("motion closed")

    def emergency_stop(self) -> None:
        """Protective stop (a human must unlock it on the pendant), falling back to the fastest
        stopJ ur_rtde accepts. The port is dead afterwards either way."""
        with self._lock:
            if self._dead_reason is None:
                try:
                    if not self._control.triggerProtectiveStop():
                        self._control.stopJ(40.0, False)
                except ControlWorkerError:
                    pass
            self._die("emergency stop")
