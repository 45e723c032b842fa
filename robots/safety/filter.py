"""SafetyFilter: the only object that holds a robot's MotionPort.

Every decision below is made by the filter's C++ core (native/src/safety/, the same code the C
ABI vla_edge_safety.h runs); this class owns the MotionPort, the clock and the Python-side API,
and sends what the core emits. Without the core it refuses to start (fails closed).

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

from ...errors import ConfigError
from ..base import JointState, MotionPort, Robot
from ..config import RobotConfig
from .errors import SafetyError
from .limits import FilterLimits
from .native import filter_spec, load_core

__all__ = ["FilterResult", "Intervention", "SafetyError", "SafetyFilter"]


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


class _CoreKinematics:
    """The core's forward kinematics (the one its TCP speed and workspace checks use)."""

    def __init__(self, core) -> None:
        self._core = core

    def tcp(self, q: np.ndarray) -> np.ndarray:
        """TCP positions (m) of every arm for q of shape (dof,) or (B, dof): (B, arms, 3)."""
        return self._core.tcp_positions(np.asarray(q, dtype=float))


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
        native = load_core()  # fails closed (SafetyError) before any motion path is opened
        try:
            self._core = native.FilterCore(filter_spec(config), shadow)
        except ValueError as exc:
            raise ConfigError(f"robot {config.name}", f"safety filter refused the limits: {exc}") from None
        self._refused = native.FilterRefused
        self.config = config
        self.shadow = shadow
        self.limits = FilterLimits.from_native(self._core.limits)
        self._clock = clock
        self._checker = _CoreKinematics(self._core)
        self._lock = threading.RLock()
        # Live mode: the motion path exists only inside the filter. Shadow mode never opens it.
        self._port: MotionPort | None = None if shadow else robot.open_motion()

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> str:
        return self._core.state

    @property
    def last_command(self) -> np.ndarray | None:
        return self._core.last_command

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
            target, target_bad = _vector(target_q)
            q, q_bad = _vector(None if state is None else state.q)
            state_time = _finite_float(state.timestamp) if state is not None else None
            command, sent, held, status, notes, stop_driver = self._core.step(
                target, target_bad, _or_nan(_finite_float(target_time)), q, q_bad,
                _or_nan(state_time), _or_nan(_scale(velocity_scale)), now,
            )
            if sent and self._port is not None:
                try:
                    self._port.command_joints(command.copy())
                except Exception as exc:
                    self._core.send_failed()
                    try:
                        self._port.stop()
                    finally:
                        raise SafetyError(f"driver failed while commanding joints: {exc}") from exc
            if stop_driver:
                self._stop_port()
            interventions = tuple(Intervention(code, detail, tuple(joints)) for code, detail, joints in notes)
            return FilterResult(command, sent, held, status, interventions, now)

    def stop(self) -> None:
        """Controlled stop now (driver decelerates); the filter is stopped until resume()."""
        with self._lock:
            if self._core.stop():
                self._stop_port()

    def emergency_stop(self) -> None:
        """Latched: after this the filter never sends again; make a new filter to move again."""
        with self._lock:
            self._core.emergency_stop()
            if self._port is not None:
                self._port.emergency_stop()

    def check_watchdog(self, now: float | None = None) -> bool:
        """Stop the arm if no fresh target+state arrived within stale_after_s. Call it from any
        thread (e.g. a timer) so that a hung run loop still stops the arm. True if it tripped."""
        with self._lock:
            now = self._clock() if now is None else now
            tripped = self._core.check_watchdog(float(now))
            if tripped:
                self._stop_port()
            return tripped

    def resume(self, state: JointState) -> None:
        """Leave `stopped`: restart from the measured position at rest. Refused after e-stop or
        while braking (the arm is still moving); a no-op while running."""
        with self._lock:
            q, q_bad = _vector(None if state is None else state.q)
            state_time = _finite_float(state.timestamp) if state is not None else None
            try:
                self._core.resume(q, q_bad, _or_nan(state_time), self._clock())
            except self._refused as exc:
                raise SafetyError(str(exc)) from None

    # ------------------------------------------------------------------ internals

    def _stop_port(self) -> None:
        if self._port is not None:
            self._port.stop()


def _vector(value: object) -> tuple[np.ndarray | None, bool]:
    """(1-D float64 array or None, malformed?): anything that is not a numeric 1-D vector is
    reported to the core as malformed, which names the fault (bad_target / bad_state)."""
    if value is None:
        return None, False
    try:
        x = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None, True
    if x.ndim != 1:
        return None, True
    return np.ascontiguousarray(x), False


def _finite_float(value: object) -> float | None:
    """A finite float from any real number type (numpy scalars included), else None."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _scale(scale: object) -> float | None:
    try:
        return float(scale)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
