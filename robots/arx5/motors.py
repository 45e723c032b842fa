"""Which motor sits on which joint of an ARX5 arm, and the default gains the vendor SDK uses.

Source (facts only): arx5-sdk include/app/config.h. Robot model "X5": motor ids 1, 2, 4, 5, 6, 7
of types EC-A4310 x3 then DM-J4310 x3, gripper DM-J4310 id 8; "L5": same ids, DM-J4340 x3 then
DM-J4310 x3. Joint controller defaults (6 DOF): kp [80, 70, 70, 30, 30, 20], kd [2, 2, 2, 1, 1,
0.7], gripper kp 5, kd 0.2. The gripper motor reads `gripper_open_readout` = 5.03 rad when fully
open at `gripper_width` = 0.088 m, and is linear in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import MotorKind

GRIPPER_OPEN_READOUT_RAD = 5.03
GRIPPER_WIDTH_M = 0.088


@dataclass(frozen=True)
class Motor:
    motor_id: int
    kind: MotorKind


@dataclass(frozen=True)
class ArmMotors:
    joints: tuple[Motor, ...]
    gripper: Motor
    kp: tuple[float, ...]
    kd: tuple[float, ...]
    gripper_kp: float
    gripper_kd: float

    @property
    def all(self) -> tuple[Motor, ...]:
        return (*self.joints, self.gripper)


_IDS = (1, 2, 4, 5, 6, 7)
_KP, _KD = (80.0, 70.0, 70.0, 30.0, 30.0, 20.0), (2.0, 2.0, 2.0, 1.0, 1.0, 0.7)

PROFILES: dict[str, ArmMotors] = {
    "X5": ArmMotors(
        tuple(Motor(i, MotorKind.EC if k < 3 else MotorKind.DM) for k, i in enumerate(_IDS)),
        Motor(8, MotorKind.DM), _KP, _KD, 5.0, 0.2,
    ),
    "L5": ArmMotors(tuple(Motor(i, MotorKind.DM) for i in _IDS), Motor(8, MotorKind.DM), _KP, _KD, 5.0, 0.2),
}


def gripper_width_to_motor(width_m: float) -> float:
    return width_m / GRIPPER_WIDTH_M * GRIPPER_OPEN_READOUT_RAD


def gripper_motor_to_width(motor_rad: float) -> float:
    return motor_rad / GRIPPER_OPEN_READOUT_RAD * GRIPPER_WIDTH_M
