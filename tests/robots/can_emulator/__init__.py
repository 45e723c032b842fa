"""Emulated ARX5 motors on a python-can virtual bus (test-only)."""

from .emulator import EmulatedMotor, MotorBusEmulator, RecordedFrame

__all__ = ["EmulatedMotor", "MotorBusEmulator", "RecordedFrame"]
