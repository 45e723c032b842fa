"""Forward kinematics (DH tables and URDF-style joint chains) for the safety filter and simulators."""

from .forward import ArmChain, RobotKinematics
from .presets import CHAIN_PRESETS, DH_PRESETS, known_presets

__all__ = ["ArmChain", "RobotKinematics", "CHAIN_PRESETS", "DH_PRESETS", "known_presets"]
