"""One arm's CAN bus: open it, keep the latest feedback of every motor, send frames.

Feedback routing follows the vendor SDK: EC motors answer on CAN id = motor id; DM motors answer
on their master id and are recognised by the motor id in the low nibble of byte 0. Frames on a
DM command id or on 0x7FF are other hosts' commands and are ignored.
"""

from __future__ import annotations

import threading
import time

from ...errors import VlaEdgeError
from .motors import ArmMotors, Motor
from .protocol import DM_STATUS_REQUEST_ID, Feedback, MotorKind, decode_feedback


class CanBusError(VlaEdgeError):
    """The CAN interface cannot be opened or written; names the interface and what to check."""


class ArmBus:
    def __init__(self, channel: str, backend: str, motors: ArmMotors, robot_name: str):
        self.channel, self.backend, self.motors, self._robot = channel, backend, motors, robot_name
        self._ec_ids = {m.motor_id for m in motors.all if m.kind is MotorKind.EC}
        self._dm_ids = {m.motor_id for m in motors.all if m.kind is MotorKind.DM}
        self._latest: dict[int, tuple[Feedback, float]] = {}
        self._cond = threading.Condition()
        self._bus = None
        self._notifier = None

    def open(self) -> None:
        try:
            import can
        except ImportError as exc:
            raise CanBusError(f"{self._robot}: the ARX5 driver needs python-can ({exc})") from None
        try:
            self._bus = can.Bus(interface=self.backend, channel=self.channel)
        except (OSError, can.CanError, ValueError, NotImplementedError) as exc:
            raise CanBusError(
                f"{self._robot}: cannot open CAN interface {self.channel!r} ({self.backend}): {exc}. "
                f"Is the adapter plugged in and up? e.g. `sudo ip link set {self.channel} up type can bitrate 1000000`"
            ) from None
        self._notifier = can.Notifier(self._bus, [self._on_message], timeout=0.05)

    def close(self) -> None:
        if self._notifier is not None:
            self._notifier.stop()
            self._notifier = None
        if self._bus is not None:
            self._bus.shutdown()
            self._bus = None

    def _on_message(self, msg) -> None:
        if msg.is_error_frame or msg.is_remote_frame or msg.is_extended_id:
            return
        cid, data = msg.arbitration_id, bytes(msg.data)
        if cid in self._ec_ids:
            fb = decode_feedback(MotorKind.EC, cid, data)
        elif cid == DM_STATUS_REQUEST_ID or cid in self._dm_ids or not data:
            return
        elif (data[0] & 0x0F) in self._dm_ids:
            fb = decode_feedback(MotorKind.DM, cid, data)
        else:
            return
        if fb is None:
            return
        with self._cond:
            self._latest[fb.motor_id] = (fb, time.monotonic())
            self._cond.notify_all()

    def send(self, can_id: int, data: bytes) -> None:
        import can

        if self._bus is None:
            raise CanBusError(f"{self._robot}: CAN interface {self.channel!r} is not open")
        try:
            self._bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False), timeout=0.01)
        except can.CanError as exc:
            raise CanBusError(f"{self._robot}: sending on CAN interface {self.channel!r} failed: {exc}") from None

    def latest(self, motor: Motor) -> tuple[Feedback, float] | None:
        with self._cond:
            return self._latest.get(motor.motor_id)

    def wait_fresh(self, motors: list[Motor], since: float, timeout: float) -> list[Motor]:
        """Wait until every motor has reported after `since`; returns the ones that did not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                missing = [m for m in motors if self._latest.get(m.motor_id, (None, -1.0))[1] < since]
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self._cond.wait(left)
