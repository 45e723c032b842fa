"""Forward kinematics of every arm of a robot, from its `kinematics:` config.

Used by the safety filter for TCP speed and workspace checks, so it is batched (B configurations
at once) and allocation-light; the simulator tests it against its MuJoCo models.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ...errors import ConfigError
from ..config import ArmKinematics, ChainJoint, DHParams, KinematicsConfig
from .presets import CHAIN_PRESETS, DH_PRESETS, PRESET_TOOL_XYZ, known_presets
from .transforms import axis_rotations, dh_transforms, fixed_transform


@dataclass(frozen=True, eq=False)
class ArmChain:
    """One arm's kinematic chain: base placement, per-joint link description, tool offset."""

    joint_indices: tuple[int, ...]
    base: np.ndarray  # 4x4 world <- arm base
    tool: np.ndarray  # 4x4 flange <- TCP
    dh: DHParams | None
    chain: tuple[ChainJoint, ...] | None

    @property
    def n_joints(self) -> int:
        return len(self.joint_indices)

    def link_transforms(self, q: np.ndarray, k: int) -> np.ndarray:
        """Transform of link k (parent <- child) for a batch of joint angles q[:, k] -> (B,4,4)."""
        if self.dh is not None:
            offset = self.dh.theta_offset[k] if self.dh.theta_offset else 0.0
            return dh_transforms(q[:, k] + offset, self.dh.a[k], self.dh.alpha[k], self.dh.d[k])
        joint = self.chain[k]
        return fixed_transform(np.array(joint.xyz), np.array(joint.rpy)) @ axis_rotations(q[:, k], np.array(joint.axis))

    @cached_property
    def link_terms(self) -> np.ndarray:
        """(n, 3, 4, 4): every link transform is exactly C0 + cos(q) C1 + sin(q) C2 (true for a DH
        row and for a URDF origin followed by a Rodrigues rotation), so a batch of FK evaluations
        is a handful of array operations instead of building matrices entry by entry."""
        probe = np.array([0.0, np.pi / 2])
        terms = np.empty((self.n_joints, 3, 4, 4))
        for k in range(self.n_joints):
            q = np.zeros((2, self.n_joints))
            q[:, k] = probe
            at0, at90 = self.link_transforms(q, k)  # cos=1,sin=0 and cos=0,sin=1
            q[:, k] = [np.pi, 0.0]
            at180 = self.link_transforms(q, k)[0]  # cos=-1,sin=0
            terms[k, 0] = (at0 + at180) / 2
            terms[k, 1] = (at0 - at180) / 2
            terms[k, 2] = at90 - terms[k, 0]
        return terms

    def tcp_transforms(self, q_arm: np.ndarray) -> np.ndarray:
        """World <- TCP for a batch of this arm's joint vectors (B, n_joints) -> (B,4,4)."""
        q_arm = np.atleast_2d(np.asarray(q_arm, dtype=float))
        c0, c1, c2 = self.link_terms[:, 0], self.link_terms[:, 1], self.link_terms[:, 2]
        links = c0 + np.cos(q_arm)[..., None, None] * c1 + np.sin(q_arm)[..., None, None] * c2
        t = self.base @ links[:, 0]
        for k in range(1, self.n_joints):
            t = t @ links[:, k]
        return t @ self.tool


@dataclass(frozen=True)
class ResolvedArm:
    """An arm's description with its preset looked up: exactly one of `dh` / `chain` is set."""

    dh: DHParams | None
    chain: tuple[ChainJoint, ...] | None
    tool_xyz: tuple[float, float, float]


def resolve_arm(index: int, arm: ArmKinematics) -> ResolvedArm:
    """Look up `preset`, apply the preset's tool offset unless the YAML sets one, and check the
    table sizes; shared by this FK and the native safety filter's configuration."""
    where = f"kinematics.arms[{index}]"
    dh, chain = arm.dh, arm.chain
    tool_xyz = list(arm.tool_xyz) if arm.tool_xyz is not None else [0.0, 0.0, 0.0]
    if arm.preset is not None:
        if arm.preset in DH_PRESETS:
            dh = DH_PRESETS[arm.preset]
        elif arm.preset in CHAIN_PRESETS:
            chain = CHAIN_PRESETS[arm.preset]
        else:
            raise ConfigError(f"{where}.preset", f"unknown kinematics preset {arm.preset!r}; known: {known_presets()}")
        if arm.tool_xyz is None and arm.preset in PRESET_TOOL_XYZ:
            tool_xyz = list(PRESET_TOOL_XYZ[arm.preset])
    n = len(arm.joint_indices)
    if dh is not None:
        for name in ("a", "alpha", "d", "theta_offset"):
            values = getattr(dh, name)
            if values is not None and len(values) != n:
                raise ConfigError(f"{where}.dh.{name}", f"has {len(values)} values, the arm has {n} joints")
    elif chain is not None and len(chain) != n:
        raise ConfigError(f"{where}.chain", f"has {len(chain)} joints, joint_indices has {n}")
    return ResolvedArm(dh=dh, chain=tuple(chain) if chain is not None else None, tool_xyz=tuple(tool_xyz))


def _build_arm(index: int, arm: ArmKinematics) -> ArmChain:
    resolved = resolve_arm(index, arm)
    tool = np.eye(4)
    tool[:3, 3] = resolved.tool_xyz
    return ArmChain(
        joint_indices=tuple(arm.joint_indices),
        base=fixed_transform(np.array(arm.base_xyz), np.array(arm.base_rpy)),
        tool=tool,
        dh=resolved.dh,
        chain=resolved.chain,
    )


class RobotKinematics:
    """FK for all arms of a robot; joint vectors are full-robot (grippers included, ignored here)."""

    def __init__(self, config: KinematicsConfig):
        self.arms: tuple[ArmChain, ...] = tuple(_build_arm(i, a) for i, a in enumerate(config.arms))

    def tcp_poses(self, q: np.ndarray) -> list[np.ndarray]:
        """Per arm, world <- TCP transforms for q of shape (dof,) or (B, dof) -> list of (B,4,4)."""
        q = np.atleast_2d(np.asarray(q, dtype=float))
        return [arm.tcp_transforms(q[:, list(arm.joint_indices)]) for arm in self.arms]

    def tcp_positions(self, q: np.ndarray) -> np.ndarray:
        """TCP positions (m) of every arm: (B, n_arms, 3)."""
        return np.stack([t[:, :3, 3] for t in self.tcp_poses(q)], axis=1)
