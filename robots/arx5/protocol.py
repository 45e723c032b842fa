"""Byte layouts of the two motor families in ARX5 arms, as the vendor SDK puts them on the bus.

Source of the facts (no code taken): arx5-sdk, github.com/yihuai-gao/arx5-sdk,
src/hardware/motor.cpp (send_motor_ctrl_cmd, send_motor_dm_cmd, RV_can_data_repack,
DM_can_data_repack) and include/app/config.h; Damiao's DM_CAN reference (enable/disable/refresh
frames). Both families use "MIT mode": one 8-byte frame carries a position target, a velocity
target, stiffness kp, damping kd and a feed-forward torque, each linearly quantized into an
unsigned integer over a fixed range; the motor answers with an 8-byte feedback frame.

EC (EC-A4310, joints 1-3 of an X5), command on CAN id = motor id:
  bits 63..61 mode (0 = MIT) | kp 12 [0, 500] | kd 9 [0, 50] | pos 16 [+-12.5 rad]
  | vel 12 [+-18 rad/s] | torque 12 [+-30 N m]
  feedback on CAN id = motor id: byte0 = ack<<5 | error; ack 1: pos 16, vel 12, current 12
  [+-30 A], byte6 = 2*temperature + 50.
DM (Damiao DM-J4310 / J4340 as ARX configures them), command on CAN id = motor id:
  pos 16 [+-12.5] | vel 12 [+-45] | kp 12 [0, 500] | kd 12 [0, 5] | torque 12 [+-18]
  feedback (any CAN id, the SDK routes by payload): byte0 = state<<4 | (id & 0xF); pos 16,
  vel 12, torque 12, byte6 = MOSFET temperature, byte7 = rotor temperature (deg C).
  state: 0 disabled, 1 enabled, >= 8 fault. Enable = FF*7 FC, disable = FF*7 FD (on the motor
  id); status request = id 0x7FF, [id_lo, id_hi, 0xCC, 0...] (no setpoint, cannot make torque).
Quantization truncates like the SDK's float_to_uint: u = int((x - lo) * (2^bits - 1) / (hi - lo)).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class MotorKind(str, Enum):
    EC = "ec"
    DM = "dm"


@dataclass(frozen=True)
class Field:
    lo: float
    hi: float
    bits: int

    def encode(self, x: float) -> int:
        """Clamp to the range, then quantize (truncating, as the vendor SDK does)."""
        x = min(max(float(x), self.lo), self.hi)
        return int((x - self.lo) * ((1 << self.bits) - 1) / (self.hi - self.lo))

    def decode(self, u: int) -> float:
        return u * (self.hi - self.lo) / ((1 << self.bits) - 1) + self.lo

    @property
    def step(self) -> float:
        """Quantization step: the round-trip error bound of encode/decode inside the range."""
        return (self.hi - self.lo) / ((1 << self.bits) - 1)


@dataclass(frozen=True)
class MitLayout:
    """Field ranges of one motor family; field order inside the frame is fixed per family."""

    pos: Field
    vel: Field
    kp: Field
    kd: Field
    torque: Field
    feedback_effort: Field  # EC reports current (A), DM reports torque (N m)


LAYOUTS: dict[MotorKind, MitLayout] = {
    MotorKind.EC: MitLayout(Field(-12.5, 12.5, 16), Field(-18.0, 18.0, 12), Field(0.0, 500.0, 12),
                            Field(0.0, 50.0, 9), Field(-30.0, 30.0, 12), Field(-30.0, 30.0, 12)),
    MotorKind.DM: MitLayout(Field(-12.5, 12.5, 16), Field(-45.0, 45.0, 12), Field(0.0, 500.0, 12),
                            Field(0.0, 5.0, 12), Field(-18.0, 18.0, 12), Field(-18.0, 18.0, 12)),
}

DM_STATUS_REQUEST_ID = 0x7FF
DM_ENABLE, DM_DISABLE = 0xFC, 0xFD
DM_STATE_DISABLED, DM_STATE_ENABLED = 0, 1


@dataclass(frozen=True)
class MitCommand:
    pos: float
    vel: float
    kp: float
    kd: float
    torque: float


@dataclass(frozen=True)
class Feedback:
    motor_id: int
    pos: float
    vel: float
    effort: float  # N m (DM) or A (EC)
    temperature: float  # deg C (DM: rotor)
    state: int  # DM: 0 disabled / 1 enabled / >= 8 fault; EC: error bits (0 = ok)


def _pack(fields: list[tuple[int, int]]) -> bytes:
    """Concatenate (value, bits) MSB-first into 8 bytes."""
    word = 0
    for value, bits in fields:
        word = (word << bits) | (value & ((1 << bits) - 1))
    return word.to_bytes(8, "big")


def _unpack(data: bytes, widths: list[int]) -> list[int]:
    word = int.from_bytes(bytes(data[:8]), "big")
    out, shift = [], 64
    for bits in widths:
        shift -= bits
        out.append((word >> shift) & ((1 << bits) - 1))
    return out


def encode_mit(kind: MotorKind, cmd: MitCommand) -> bytes:
    lay = LAYOUTS[kind]
    p, v, kp, kd, t = (lay.pos.encode(cmd.pos), lay.vel.encode(cmd.vel), lay.kp.encode(cmd.kp),
                       lay.kd.encode(cmd.kd), lay.torque.encode(cmd.torque))
    if kind is MotorKind.EC:
        return _pack([(0, 3), (kp, 12), (kd, 9), (p, 16), (v, 12), (t, 12)])
    return _pack([(p, 16), (v, 12), (kp, 12), (kd, 12), (t, 12)])


def decode_mit(kind: MotorKind, data: bytes) -> MitCommand:
    lay = LAYOUTS[kind]
    if kind is MotorKind.EC:
        _, kp, kd, p, v, t = _unpack(data, [3, 12, 9, 16, 12, 12])
    else:
        p, v, kp, kd, t = _unpack(data, [16, 12, 12, 12, 12])
    return MitCommand(lay.pos.decode(p), lay.vel.decode(v), lay.kp.decode(kp), lay.kd.decode(kd), lay.torque.decode(t))


def encode_feedback(kind: MotorKind, fb: Feedback) -> bytes:
    lay = LAYOUTS[kind]
    p, v, e = lay.pos.encode(fb.pos), lay.vel.encode(fb.vel), lay.feedback_effort.encode(fb.effort)
    temp = int(min(max(fb.temperature, 0), 100))
    if kind is MotorKind.EC:
        return _pack([(1, 3), (fb.state, 5), (p, 16), (v, 12), (e, 12), (2 * temp + 50, 8), (0, 8)])
    return _pack([(fb.state, 4), (fb.motor_id & 0xF, 4), (p, 16), (v, 12), (e, 12), (temp, 8), (temp, 8)])


def decode_feedback(kind: MotorKind, can_id: int, data: bytes) -> Feedback | None:
    """None if the frame is not a position feedback frame of this family."""
    if len(data) != 8:
        return None
    lay = LAYOUTS[kind]
    if kind is MotorKind.EC:
        ack, err, p, v, e, temp, _ = _unpack(data, [3, 5, 16, 12, 12, 8, 8])
        if ack != 1:
            return None
        return Feedback(can_id, lay.pos.decode(p), lay.vel.decode(v), lay.feedback_effort.decode(e), (temp - 50) / 2, err)
    state, mid, p, v, e, _, t_rotor = _unpack(data, [4, 4, 16, 12, 12, 8, 8])
    return Feedback(mid, lay.pos.decode(p), lay.vel.decode(v), lay.feedback_effort.decode(e), float(t_rotor), state)


def dm_special(code: int) -> bytes:
    """DM enable/disable frame payload (sent on the motor's command id)."""
    return bytes([0xFF] * 7 + [code])


def dm_status_request(motor_id: int) -> bytes:
    """Payload of the DM status request (sent on id 0x7FF): asks for one feedback frame."""
    return bytes([motor_id & 0xFF, (motor_id >> 8) & 0xFF, 0xCC, 0, 0, 0, 0, 0])


def is_dm_special(data: bytes) -> bool:
    return len(data) == 8 and all(b == 0xFF for b in data[:7]) and data[7] in (0xFB, DM_ENABLE, DM_DISABLE, 0xFE)


def quantization_step(kind: MotorKind) -> dict[str, float]:
    lay = LAYOUTS[kind]
    return {"pos": lay.pos.step, "vel": lay.vel.step, "kp": lay.kp.step, "kd": lay.kd.step, "torque": lay.torque.step}


__all__ = ["MotorKind", "MitCommand", "Feedback", "LAYOUTS", "encode_mit", "decode_mit", "encode_feedback",
           "decode_feedback", "dm_special", "dm_status_request", "is_dm_special", "quantization_step"]
