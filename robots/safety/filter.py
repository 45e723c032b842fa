"""SafetyFilter: the only object that holds a robot's MotionPort.

Every tick the caller passes the policy's joint target (or None), the time that target is meant
for, and the latest measured state. The filter returns what it sent (or, in shadow mode, what it
would have sent) plus every intervention, lerobot-style, so the run loop logs what the arm did.

States:  running -> braking -> stopped ;  any -> estopped (latched for the filter's lifetime).
- running: a valid target is limited (position, velocity, acceleration, braking distance, TCP
  speed, workspace) and sent.
- braking: a fault (bad/stale/missing target, missing/stale/non-finite state, tracking error,
  velocity_scale <= 0) was seen. Each tick emits the next command of the braking plan: every DOF
  decelerates at its acceleration limit along the direction it was already moving, never past
  where the plan (checked when the last accepted command was sent) said it would stop. Once at
  rest, MotionPort.stop() is called and the filter is stopped.
- stopped: nothing is sent; results report the last command. `resume(state)` restarts from the
  measured position at zero velocity.
- estopped: MotionPort.emergency_stop() was called; nothing is ever sent again.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...errors import ConfigError, VlaEdgeError
from ..base import JointState, MotionPort, Robot
from ..config import RobotConfig
from ..kinematics import RobotKinematics
from .limits import FilterLimits
from .motion import PlanChecker, brake_velocity, goal_velocity, velocity_window


class SafetyError(VlaEdgeError):
    """The filter refused an operation (resume after e-stop, driver failure while commanding)."""


@dataclass(frozen=True)
class Intervention:
    """One thing the filter changed or refused this tick; `code` is stable for logs and tests."""

    code: str  # e.g. "position_clamped", "velocity_limited", "stale_target", "non_finite_target"
    detail: str = ""
    joints: tuple[int, ...] = ()


@dataclass(frozen=True)
class FilterResult:
    """What this tick did. `command` is the target sent (live) or that would have been sent
    (shadow), always finite; while stopped it is the last command with `sent` False; None only
    before the first command (no valid state seen yet)."""

    command: np.ndarray | None
    sent: bool
    held: bool  # True when the target was not followed (braking, stopped or e-stopped)
    state: str  # "running" | "braking" | "stopped" | "estopped"
    interventions: tuple[Intervention, ...] = field(default_factory=tuple)
    timestamp: float = 0.0

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(i.code for i in self.interventions)

    def to_dict(self) -> dict:
        """JSON-ready record for run logs: what was sent and why it differs from what was asked."""
        return {
            "command": None if self.command is None else [float(x) for x in self.command],
            "sent": self.sent,
            "held": self.held,
            "state": self.state,
            "timestamp": self.timestamp,
            "interventions": [{"code": i.code, "detail": i.detail, "joints": list(i.joints)} for i in self.interventions],
        }


_SCALE_EPS = 1e-9
_STATE_RANGE_TOL = 0.01  # rad/m: encoder noise at a hard stop is fine, a reading far outside is not
_ESCALATION = (1.0, 0.5, 0.25, 0.1)  # fractions of the limited step tried against TCP speed / workspace


class SafetyFilter:
    """Limits every motion command for one robot; see the module docstring for the state machine."""

    def __init__(self, robot: Robot, config: RobotConfig, shadow: bool, clock: Callable[[], float] = time.monotonic):
        caps = robot.capabilities
        if caps.dof != config.dof:
            raise ConfigError(
                f"robot {config.name}", f"driver reports {caps.dof} DOF {caps.joint_names}, config has {config.dof}"
            )
        if tuple(caps.gripper_indices) != config.gripper_indices:
            raise ConfigError(
                f"robot {config.name}",
                f"driver gripper indices {caps.gripper_indices} differ from config {config.gripper_indices}",
            )
        self.config = config
        self.shadow = shadow
        self.limits = FilterLimits.from_config(config)
        self._clock = clock
        self._checker = PlanChecker(RobotKinematics(config.kinematics), self.limits)
        self._lock = threading.RLock()
        self._p: np.ndarray | None = None  # last emitted command
        self._v = np.zeros(config.dof)  # its velocity (p - p_prev) / dt
        self._tcp: np.ndarray | None = None  # FK of _p
        self._last_target: np.ndarray | None = None
        self._last_fresh = clock()  # last tick with a valid target and state (watchdog)
        self._state = "running"
        # Live mode: the motion path exists only inside the filter. Shadow mode never opens it.
        self._port: MotionPort | None = None if shadow else robot.open_motion()

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> str:
        return self._state

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self._p is None else self._p.copy()

    def step(
        self,
        target_q: np.ndarray | None,
        target_time: float | None,
        state: JointState | None,
        velocity_scale: float = 1.0,
    ) -> FilterResult:
        """Filter one tick's target. Call once per control period; never raises for bad input
        (bad input is a hold), only for a driver failure while sending (SafetyError)."""
        with self._lock:
            now = self._clock()
            if self._state in ("stopped", "estopped"):
                return self._result(False, True, (), now)
            if self._p is None:
                fault = self._check_state(state, now, require_tracking=False)
                if fault is not None:
                    return self._result(False, True, (fault,), now)
                self._anchor(state.q)
            fault = self._check_state(state, now, require_tracking=not self.shadow) or self._check_target(
                target_q, target_time, now
            )
            scale = _sanitize_scale(velocity_scale)
            if fault is None and scale <= _SCALE_EPS:
                fault = Intervention("velocity_scale_zero", f"velocity_scale={velocity_scale!r}")
            if fault is not None or self._state == "braking":
                notes = [fault] if fault is not None else []
                return self._start_braking_or_stop(notes, now)
            self._last_fresh = now
            return self._follow(np.asarray(target_q, dtype=float), scale, now)

    def stop(self) -> None:
        """Controlled stop now (driver decelerates); the filter is stopped until resume()."""
        with self._lock:
            if self._state in ("stopped", "estopped"):
                return
            self._stop_port()

    def emergency_stop(self) -> None:
        """Latched: after this the filter never sends again; make a new filter to move again."""
        with self._lock:
            self._state = "estopped"
            if self._port is not None:
                self._port.emergency_stop()

    def check_watchdog(self, now: float | None = None) -> bool:
        """Stop the arm if no fresh target+state arrived within stale_after_s. Call it from any
        thread (e.g. a timer) so that a hung run loop still stops the arm. True if it tripped."""
        with self._lock:
            now = self._clock() if now is None else now
            if self._state in ("stopped", "estopped") or self._p is None:
                return False  # nothing commanded yet: there is no stream to stop
            if now - self._last_fresh <= self.limits.stale_after_s:
                return False
            self.stop()
            return True

    def resume(self, state: JointState) -> None:
        """Leave `stopped`: restart from the measured position at rest. Refused after e-stop or
        while braking (the arm is still moving); a no-op while running."""
        with self._lock:
            if self._state == "estopped":
                raise SafetyError("emergency stop is latched; create a new SafetyFilter to move again")
            if self._state == "braking":
                raise SafetyError("cannot resume while braking; wait until the filter reports 'stopped'")
            if self._state == "running":
                return  # re-anchoring a moving arm would be a velocity jump; nothing to resume
            now = self._clock()
            fault = self._check_state(state, now, require_tracking=False)
            if fault is not None:
                raise SafetyError(f"cannot resume: {fault.code} ({fault.detail})")
            self._anchor(state.q)
            self._last_fresh = now
            self._state = "running"

    # ------------------------------------------------------------------ internals

    def _anchor(self, q: np.ndarray) -> None:
        self._p = np.array(q, dtype=float)
        self._v = np.zeros_like(self._p)
        self._tcp = self._checker.tcp(self._p)[0]
        self._last_target = None

    def _check_state(self, state: JointState | None, now: float, require_tracking: bool) -> Intervention | None:
        if state is None:
            return Intervention("missing_state", "no joint state this tick")
        try:
            q = np.asarray(state.q, dtype=float)
        except (TypeError, ValueError):
            return Intervention("bad_state", f"state q is not numeric: {type(state.q).__name__}")
        if q.shape != (self.config.dof,):
            return Intervention("bad_state", f"state q has shape {q.shape}, expected ({self.config.dof},)")
        if not np.all(np.isfinite(q)):
            return Intervention("non_finite_state", "state q contains NaN or Inf")
        outside = np.flatnonzero((q < self.limits.hardware_min - _STATE_RANGE_TOL) | (q > self.limits.hardware_max + _STATE_RANGE_TOL))
        if outside.size:
            return Intervention("state_out_of_range", "measured joints beyond the hardware range", _idx(outside))
        ts = _finite_float(state.timestamp)
        if ts is None or abs(now - ts) > self.limits.stale_after_s:  # future stamps: clock mismatch
            return Intervention("stale_state", f"state timestamp {ts!r}, now {now:.6f}")
        if require_tracking and self._p is not None:
            err = np.abs(q - self._p)
            worst = int(np.argmax(err))
            if err[worst] > self.limits.tracking_error:
                return Intervention("tracking_error", f"|q - command| = {err[worst]:.4f}", (worst,))
        return None

    def _check_target(self, target: np.ndarray | None, target_time: float | None, now: float) -> Intervention | None:
        if target is None:
            return Intervention("missing_target", "no target this tick")
        try:
            x = np.asarray(target, dtype=float)
        except (TypeError, ValueError):
            return Intervention("bad_target", f"not numeric: {type(target).__name__}")
        if x.shape != (self.config.dof,):
            return Intervention("bad_target", f"shape {x.shape}, expected ({self.config.dof},)")
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            return Intervention("non_finite_target", "NaN or Inf in target", tuple(int(i) for i in bad))
        out = np.flatnonzero((x < self.limits.hardware_min) | (x > self.limits.hardware_max))
        if out.size:
            return Intervention("out_of_range_target", "beyond the arm's hardware range", tuple(int(i) for i in out))
        t_time = _finite_float(target_time)
        if t_time is None:
            return Intervention("missing_target_time", f"target_time {target_time!r}")
        target_time = t_time
        if now - target_time > self.limits.stale_after_s:
            return Intervention("stale_target", f"target is {now - target_time:.3f} s old")
        if target_time - now > self.limits.stale_after_s:
            return Intervention("future_target", f"target is {target_time - now:.3f} s in the future (clock mismatch?)")
        return None

    def _follow(self, target: np.ndarray, scale: float, now: float) -> FilterResult:
        lim, p, v = self.limits, self._p, self._v
        notes: list[Intervention] = []
        x = np.clip(target, lim.position_min, lim.position_max)
        clamped = np.flatnonzero(x != target)
        if clamped.size:
            notes.append(Intervention("position_clamped", "target outside operating range", _idx(clamped)))
        target_v = np.zeros_like(x) if self._last_target is None else (x - self._last_target) / lim.dt
        self._last_target = x
        window = velocity_window(p, v, lim, scale)
        v_brake = brake_velocity(v, lim.acceleration * lim.dt)
        if not window.feasible or not window.contains(v_brake):
            # Only after velocity_scale dropped (or starting outside the range): decelerate at the limit.
            notes.append(Intervention("decelerating", "velocity above the scaled limit; braking at the acceleration limit"))
            return self._emit(v_brake, notes, held=False, now=now)
        v_goal = goal_velocity(p, x, target_v, lim)
        v_cand = np.clip(v_goal, window.lower, window.upper)
        limited = np.flatnonzero(np.abs(v_cand - v_goal) > 1e-12)
        if limited.size:
            notes.append(Intervention("velocity_limited", "velocity/acceleration/braking limit", _idx(limited)))
        tcp_limit = lim.tcp_speed * scale
        first_failure = None
        for fraction in _ESCALATION:
            v_new = v_brake + fraction * (v_cand - v_brake)
            failure, tcp_new = self._checker.check(self._tcp, p + v_new * lim.dt, v_new, tcp_limit)
            if failure is None:
                if first_failure is not None:
                    notes.append(Intervention(first_failure, f"step scaled to {fraction:g} of the limited step"))
                return self._emit(v_new, notes, held=False, now=now, tcp_new=tcp_new)
            first_failure = first_failure or failure
        notes.append(Intervention(first_failure or "tcp_speed", "no shortened step passes; following the braking plan"))
        return self._emit(v_brake, notes, held=True, now=now)

    def _start_braking_or_stop(self, notes: list[Intervention], now: float) -> FilterResult:
        """Fault path: emit the next braking-plan command; once at rest call MotionPort.stop()."""
        if self._p is None:
            # Nothing was ever commanded, so nothing moves: report the hold, stay ready.
            return self._result(False, True, tuple(notes), now)
        if np.any(self._v):
            self._state = "braking"
            result = self._emit(brake_velocity(self._v, self.limits.acceleration * self.limits.dt), notes, True, now)
            if np.any(self._v):
                return result
            self._stop_port()
            return FilterResult(result.command, True, True, self._state, result.interventions, now)
        self._stop_port()
        return self._result(False, True, tuple(notes), now)

    def _stop_port(self) -> None:
        self._state = "stopped"
        if self._port is not None:
            self._port.stop()

    def _emit(
        self, v_new: np.ndarray, notes: list[Intervention], held: bool, now: float, tcp_new: np.ndarray | None = None
    ) -> FilterResult:
        p_new = self._p + v_new * self.limits.dt
        if not np.all(np.isfinite(p_new)):  # unreachable by construction; fail closed anyway
            self._stop_port()
            return self._result(False, True, (*notes, Intervention("internal_non_finite")), now)
        if self._port is not None:
            try:
                self._port.command_joints(p_new.copy())
            except Exception as exc:
                self._state = "stopped"
                try:
                    self._port.stop()
                finally:
                    raise SafetyError(f"driver failed while commanding joints: {exc}") from exc
        self._p, self._v = p_new, v_new
        self._tcp = self._checker.tcp(p_new)[0] if tcp_new is None else tcp_new
        return self._result(True, held, tuple(notes), now)

    def _result(self, sent: bool, held: bool, notes: tuple[Intervention, ...], now: float) -> FilterResult:
        command = self._p.copy() if self._p is not None else None
        return FilterResult(command, sent, held, self._state, notes, now)


def _finite_float(value: object) -> float | None:
    """A finite float from any real number type (numpy scalars included), else None."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _sanitize_scale(scale: float) -> float:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(s) or s <= 0.0:
        return 0.0
    return min(s, 1.0)


def _idx(indices: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in indices)
