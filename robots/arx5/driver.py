"""ARX5 arm(s) over CAN as a vla-edge Robot: `arx5` (one arm) and `arx5-bimanual` (two buses).

What goes on the bus, by mode (the reason this driver exists instead of the vendor library):
- connect(), any mode: nothing is sent.
- read_state(), shadow: DM motors get the DM status request (id 0x7FF, no setpoint, cannot make
  torque); EC motors are only listened to, because the published EC protocol has no request
  that does not also carry a torque command. If nothing else drives them, reading an X5's EC
  joints in shadow mode fails with an error that says so (an L5 is all DM and reads fine).
- read_state(), live before open_motion(): as shadow, plus a read probe for EC motors (they only
  answer commands): an MIT frame with kp = 0 (no position target), the configured kd (damping,
  like the SDK's damping mode) and zero feed-forward torque (its 12-bit code is -0.007 N m).
- open_motion(): read every motor (refused if any is silent or reports a fault), enable DM
  motors, immediately command a hold at the measured position with the configured kp/kd; the
  returned port streams MIT position targets.
- stop(): hold at the last measured position with the configured gains (motors stay enabled).
- emergency_stop(): DM disable frames and zero-gain, zero-torque EC frames at once; latched.
- disconnect() after motion: damping (kp = 0) for `_SHUTDOWN_DAMPING_S`, then disable, like the
  SDK's shutdown_to_passive; the arm sinks slowly instead of dropping.
No gravity feed-forward is sent (the SDK computes one from its URDF dynamics); expect a static
sag of roughly gravity torque / kp on the shoulder joints.
"""

from __future__ import annotations

import time

import numpy as np

from ...errors import ConfigError, VlaEdgeError
from ..base import JointState, MotionPort, Robot, RobotCapabilities
from ..config import RobotConfig
from .bus import ArmBus
from .motors import ArmMotors, Motor, gripper_motor_to_width, gripper_width_to_motor
from .protocol import DM_DISABLE, DM_ENABLE, DM_STATUS_REQUEST_ID, MitCommand, MotorKind, dm_special, dm_status_request, encode_mit
from .settings import ArxSettings, parse_arx_settings

_SHUTDOWN_DAMPING_S = 0.5


class MotorFeedbackError(VlaEdgeError):
    """Motors did not report in time; names the bus and motor ids."""


class MotorFaultError(VlaEdgeError):
    """A motor reports a fault (DM state >= 8, EC error bits); motion is refused."""


def _arm_dofs(config: RobotConfig) -> list[tuple[list[int], int]]:
    """Per arm: its 6 joint DOF indices and its gripper DOF (the index right after the joints)."""
    out = []
    for k, arm in enumerate(config.kinematics.arms):
        joints = list(arm.joint_indices)
        if len(joints) != 6:
            raise ConfigError(f"kinematics.arms[{k}].joint_indices", f"an ARX5 arm has 6 joints, got {len(joints)}")
        gripper = max(joints) + 1
        if gripper not in config.gripper_indices:
            raise ConfigError("grippers", f"ARX5 arm {k} needs its gripper at DOF index {gripper} (after its joints)")
        out.append((joints, gripper))
    return out


class Arx5MotionPort(MotionPort):
    def __init__(self, robot: "Arx5Robot"):
        self._robot = robot
        self.estopped = False

    def command_joints(self, q_target: np.ndarray) -> None:
        r = self._robot
        q = np.asarray(q_target, dtype=float)
        if q.shape != (r.config.dof,) or not np.all(np.isfinite(q)):
            self.stop()
            raise VlaEdgeError(f"{r.name}: joint target must be {r.config.dof} finite values, got shape {q.shape}; arm held")
        if self.estopped:
            raise VlaEdgeError(f"{r.name}: emergency stop is latched; reconnect to move again")
        r._send_targets(q)

    def stop(self) -> None:
        if not self.estopped:
            self._robot._hold_measured()

    def emergency_stop(self) -> None:
        self.estopped = True
        self._robot._passive_all()


class Arx5Robot(Robot):
    def __init__(self, config: RobotConfig, shadow: bool):
        self.name, self.config, self.shadow = config.name, config, shadow
        self._dofs = _arm_dofs(config)
        self.settings: ArxSettings = parse_arx_settings(config.connection, len(self._dofs))
        self._caps = RobotCapabilities(tuple(config.joints), config.control_rate_hz, config.gripper_indices,
                                       len(self._dofs), ())
        self._buses: list[ArmBus] = []
        self._port: Arx5MotionPort | None = None
        self._last_cmd: list[dict[int, MitCommand]] = []

    @property
    def capabilities(self) -> RobotCapabilities:
        return self._caps

    @property
    def motors(self) -> ArmMotors:
        return self.settings.motors

    def connect(self) -> None:
        if self._buses:
            return
        buses = []
        try:
            for ch in self.settings.channels:
                bus = ArmBus(ch, self.settings.can_backend, self.motors, self.name)
                bus.open()
                buses.append(bus)
        except Exception:
            for bus in buses:
                bus.close()
            raise
        self._buses = buses
        self._last_cmd = [{} for _ in buses]

    def disconnect(self) -> None:
        try:
            if self._port is not None and not self._port.estopped:
                self._shutdown_to_passive()
        finally:
            self._port = None
            for bus in self._buses:
                bus.close()
            self._buses = []

    # ------------------------------------------------------------------------------ frames out

    def _mit(self, a: int, motor: Motor, cmd: MitCommand) -> None:
        self._buses[a].send(motor.motor_id, encode_mit(motor.kind, cmd))
        self._last_cmd[a][motor.motor_id] = cmd

    def _gains(self, k: int | None) -> tuple[float, float]:
        m = self.motors
        return (m.gripper_kp, m.gripper_kd) if k is None else (m.kp[k], m.kd[k])

    def _send_targets(self, q: np.ndarray) -> None:
        for a, (joints, gripper) in enumerate(self._dofs):
            for k, (motor, j) in enumerate(zip(self.motors.joints, joints)):
                kp, kd = self._gains(k)
                self._mit(a, motor, MitCommand(float(q[j]), 0.0, kp, kd, 0.0))
            kp, kd = self._gains(None)
            self._mit(a, self.motors.gripper, MitCommand(gripper_width_to_motor(float(q[gripper])), 0.0, kp, kd, 0.0))

    def _hold_measured(self) -> None:
        """Command the last measured position of every motor (stop: decelerate under kp/kd and hold)."""
        for a, bus in enumerate(self._buses):
            for k, motor in enumerate(self.motors.all):
                got = bus.latest(motor)
                if got is None:
                    continue  # never heard from it: nothing safe to hold at; it keeps its last command
                kp, kd = self._gains(k if k < 6 else None)
                self._mit(a, motor, MitCommand(got[0].pos, 0.0, kp, kd, 0.0))

    def _passive_all(self) -> None:
        """Zero torque everywhere now: DM disable, EC zero-gain zero-torque. Tries every bus."""
        errors = []
        for a, bus in enumerate(self._buses):
            for motor in self.motors.all:
                try:
                    if motor.kind is MotorKind.DM:
                        bus.send(motor.motor_id, dm_special(DM_DISABLE))
                    else:
                        self._mit(a, motor, MitCommand(0.0, 0.0, 0.0, 0.0, 0.0))
                except VlaEdgeError as exc:
                    errors.append(str(exc))
        if errors:
            raise VlaEdgeError(f"{self.name}: emergency stop could not reach every motor: {errors[0]}")

    def _shutdown_to_passive(self) -> None:
        end = time.monotonic() + _SHUTDOWN_DAMPING_S
        while time.monotonic() < end:
            for a, bus in enumerate(self._buses):
                for k, motor in enumerate(self.motors.all):
                    got = bus.latest(motor)
                    pos = got[0].pos if got else 0.0
                    self._mit(a, motor, MitCommand(pos, 0.0, 0.0, self._gains(k if k < 6 else None)[1], 0.0))
            time.sleep(self.config.control_period_s)
        self._passive_all()

    # ------------------------------------------------------------------------------ state in

    def _refresh(self, a: int, live: bool) -> None:
        bus, now = self._buses[a], time.monotonic()
        stale = [m for m in self.motors.all if (bus.latest(m) or (None, -1.0))[1] < now - self.config.control_period_s]
        if not stale:
            return
        for m in stale:
            if m.kind is MotorKind.DM:
                bus.send(DM_STATUS_REQUEST_ID, dm_status_request(m.motor_id))
            elif self._port is not None and m.motor_id in self._last_cmd[a]:
                self._mit(a, m, self._last_cmd[a][m.motor_id])  # repeat the standing command: no new motion
            elif live and self._port is None:
                # Read probe: no position target (kp = 0), damping only, so an arm that something
                # else left holding sinks slowly instead of dropping.
                k = self.motors.all.index(m)
                self._mit(a, m, MitCommand(0.0, 0.0, 0.0, self._gains(k if k < 6 else None)[1], 0.0))
        missing = bus.wait_fresh(stale, now, self.settings.feedback_timeout_s)
        if missing:
            ids = [m.motor_id for m in missing]
            why = ""
            if any(m.kind is MotorKind.EC for m in missing) and self.shadow:
                why = (" EC motors answer only to torque-carrying commands, which shadow mode never sends; "
                       "run the vendor controller alongside, or use a live session")
            raise MotorFeedbackError(
                f"{self.name}: no feedback within {self.settings.feedback_timeout_s * 1e3:.0f} ms from motor ids {ids} "
                f"on {bus.channel!r} (check power, wiring and the 1 Mbit/s bitrate).{why}"
            )

    def read_state(self) -> JointState:
        if not self._buses:
            raise VlaEdgeError(f"{self.name}: not connected; call connect() first")
        n = self.config.dof
        q, qd = np.zeros(n), np.zeros(n)
        oldest = np.inf
        status: dict = {"motor_state": {}, "temperature_c": {}, "faults": {}, "motion_open": self._port is not None}
        for a, (joints, gripper) in enumerate(self._dofs):
            self._refresh(a, live=not self.shadow)
            bus = self._buses[a]
            for motor, j in zip(self.motors.all, [*joints, gripper]):
                fb, t = bus.latest(motor)
                oldest = min(oldest, t)
                is_gripper = j == gripper
                q[j] = gripper_motor_to_width(fb.pos) if is_gripper else fb.pos
                qd[j] = gripper_motor_to_width(fb.vel) if is_gripper else fb.vel
                key = f"{bus.channel}:{motor.motor_id}"
                status["motor_state"][key] = fb.state
                status["temperature_c"][key] = fb.temperature
                faulty = fb.state >= 8 if motor.kind is MotorKind.DM else fb.state != 0
                if faulty:
                    status["faults"][key] = fb.state
        return JointState(q=q, qd=qd, timestamp=float(oldest), status=status)

    def open_motion(self) -> MotionPort:
        if self.shadow:
            raise VlaEdgeError(f"{self.name}: opened in shadow mode, which has no motion path")
        if not self._buses:
            raise VlaEdgeError(f"{self.name}: not connected; call connect() first")
        state = self.read_state()  # every motor must be heard from before anything is enabled
        if state.status["faults"]:
            raise MotorFaultError(
                f"{self.name}: motors report faults {state.status['faults']} (bus:id -> code); "
                "clear them (power-cycle or the vendor tool) before enabling"
            )
        for bus in self._buses:
            for m in self.motors.all:
                if m.kind is MotorKind.DM:
                    bus.send(m.motor_id, dm_special(DM_ENABLE))
        self._port = Arx5MotionPort(self)
        self._hold_measured()
        return self._port


def make_robot(config: RobotConfig, shadow: bool) -> Robot:
    """Registry entry point for `arx5` and `arx5-bimanual`."""
    return Arx5Robot(config, shadow)
