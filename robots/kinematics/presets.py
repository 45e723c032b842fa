"""Published kinematic tables, referenced from robot YAML by `preset:` so the numbers live in one
place with their source.

UR3 / UR3e: Universal Robots, "DH parameters for calculations of kinematics and dynamics"
(universal-robots.com support article; same values as ur_description's default_kinematics.yaml).
Standard (distal) DH convention, metres and radians; alpha = [pi/2, 0, 0, pi/2, -pi/2, 0].

ARX5 (X5 / L5): no DH table is published. ARX and the arx5-sdk (github.com/yihuai-gao/arx5-sdk,
models/arx5.urdf, used by its KDL solver between base_link and eef_link) describe the arm as a
URDF joint chain, so the preset is that chain: per-joint origin xyz/rpy then rotation axis. The
TCP is the SDK's `eef_link` (gripper_fixed_joint, 0.145 m along link6 x).
"""

from __future__ import annotations

import math

from ..config import ChainJoint, DHParams

_HALF_PI = math.pi / 2

DH_PRESETS: dict[str, DHParams] = {
    # UR3 (CB3): d1, a2, a3, d4, d5, d6 from Universal Robots' published DH table.
    "ur3": DHParams(
        a=[0.0, -0.24365, -0.21325, 0.0, 0.0, 0.0],
        alpha=[_HALF_PI, 0.0, 0.0, _HALF_PI, -_HALF_PI, 0.0],
        d=[0.1519, 0.0, 0.0, 0.11235, 0.08535, 0.0819],
    ),
    # UR3e (e-Series): same structure, slightly different link lengths.
    "ur3e": DHParams(
        a=[0.0, -0.24355, -0.2132, 0.0, 0.0, 0.0],
        alpha=[_HALF_PI, 0.0, 0.0, _HALF_PI, -_HALF_PI, 0.0],
        d=[0.15185, 0.0, 0.0, 0.13105, 0.08535, 0.0921],
    ),
}

CHAIN_PRESETS: dict[str, list[ChainJoint]] = {
    # arx5-sdk models/arx5.urdf joint1..joint6 origins and axes; rpy -3.1416 kept as written there.
    "arx5": [
        ChainJoint(xyz=[0.0, 0.0, 0.0603], rpy=[0.0, 0.0, 0.0], axis=[0.0, 0.0, 1.0]),
        ChainJoint(xyz=[0.02, 0.0, 0.0402], rpy=[0.0, 0.0, 0.0], axis=[0.0, 1.0, 0.0]),
        ChainJoint(xyz=[-0.264, 0.0, 0.0], rpy=[-3.1416, 0.0, 0.0], axis=[0.0, 1.0, 0.0]),
        ChainJoint(xyz=[0.245, 0.0, -0.056], rpy=[0.0, 0.0, 0.0], axis=[0.0, 1.0, 0.0]),
        ChainJoint(xyz=[0.06575, -0.001, -0.0825], rpy=[0.0, 0.0, 0.0], axis=[0.0, 0.0, 1.0]),
        ChainJoint(xyz=[0.02845, 0.0, 0.0825], rpy=[-3.1416, 0.0, 0.0], axis=[1.0, 0.0, 0.0]),
    ],
}

# Tool offsets (flange -> TCP) that belong with a chain preset, applied unless the YAML sets one.
PRESET_TOOL_XYZ: dict[str, tuple[float, float, float]] = {"arx5": (0.145, 0.0, 0.0)}


def known_presets() -> list[str]:
    return sorted([*DH_PRESETS, *CHAIN_PRESETS])
