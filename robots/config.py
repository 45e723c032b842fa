"""Typed robot configuration: the arm's published hardware limits plus the operating limits a user
may tighten, loaded from the package's per-robot YAML and optionally overlaid by a user file.

Why two limit sets: `hardware_limits` are facts about the arm (from its datasheet / SDK) and are
fixed by the shipped YAML; `limits` are what the safety filter enforces. Every operating limit must
be inside the hardware limit, so a typo in a user file can never loosen what the arm tolerates.
All units are SI: rad, rad/s, rad/s^2, m, m/s (gripper DOFs: m and m/s).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError

_STRICT = ConfigDict(extra="forbid", frozen=True)


class _Model(BaseModel):
    model_config = _STRICT


class HardwareLimits(_Model):
    """The arm's own limits, per DOF in action order (grippers included). Not user-overridable."""

    position_min: list[float]
    position_max: list[float]
    velocity: list[float] = Field(description="rad/s (m/s for grippers)")
    acceleration: list[float] = Field(description="rad/s^2 (m/s^2 for grippers)")
    tcp_speed: float = Field(gt=0, description="m/s, Cartesian speed of each arm's tool centre point")


class OperatingLimits(_Model):
    """What the safety filter enforces. Every value must be inside the hardware limit.

    position_min/max default to the hardware range; the filter additionally keeps
    `position_margin` away from it. `max_step` caps the change of any DOF per control tick.
    """

    position_margin: float = Field(default=0.05, ge=0, description="rad kept clear of the position range ends")
    position_min: list[float] | None = None
    position_max: list[float] | None = None
    velocity: list[float]
    acceleration: list[float]
    max_step: list[float] | None = Field(default=None, description="max |delta q| per control tick")
    tcp_speed: float = Field(gt=0)
    tracking_error: float = Field(
        default=0.25, gt=0, description="max |measured q - commanded q| before the filter stops the arm"
    )


class DHParams(_Model):
    """Standard (distal) Denavit-Hartenberg table, one entry per arm joint."""

    a: list[float]
    alpha: list[float]
    d: list[float]
    theta_offset: list[float] | None = None


class ChainJoint(_Model):
    """One revolute joint as URDF writes it: fixed origin transform from the parent, then rotation."""

    xyz: list[float] = Field(min_length=3, max_length=3)
    rpy: list[float] = Field(default=[0.0, 0.0, 0.0], min_length=3, max_length=3)
    axis: list[float] = Field(min_length=3, max_length=3)


class ArmKinematics(_Model):
    """Kinematics of one arm: exactly one of `preset`, `dh` or `chain`, plus where the arm stands."""

    joint_indices: list[int] = Field(min_length=1)
    preset: str | None = None
    dh: DHParams | None = None
    chain: list[ChainJoint] | None = None
    base_xyz: list[float] = Field(default=[0.0, 0.0, 0.0], min_length=3, max_length=3)
    base_rpy: list[float] = Field(default=[0.0, 0.0, 0.0], min_length=3, max_length=3)
    tool_xyz: list[float] | None = Field(
        default=None, min_length=3, max_length=3, description="flange -> TCP (m); None: the preset's, else 0"
    )

    @model_validator(mode="after")
    def _one_description(self) -> "ArmKinematics":
        given = [k for k in ("preset", "dh", "chain") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of preset, dh, chain (got {given or 'none'})")
        return self


class KinematicsConfig(_Model):
    arms: list[ArmKinematics] = Field(min_length=1)


class WorkspaceBox(_Model):
    """Axis-aligned box (m, world frame = first arm's base unless base offsets say otherwise) that
    every arm's TCP must stay inside."""

    min: list[float] = Field(min_length=3, max_length=3)
    max: list[float] = Field(min_length=3, max_length=3)

    @model_validator(mode="after")
    def _ordered(self) -> "WorkspaceBox":
        if any(lo >= hi for lo, hi in zip(self.min, self.max)):
            raise ValueError(f"workspace min {self.min} must be below max {self.max} on every axis")
        return self


class GripperConfig(_Model):
    """A gripper DOF: its opening range (m) and maximum opening rate (m/s)."""

    index: int = Field(ge=0)
    range: list[float] = Field(min_length=2, max_length=2)
    max_rate: float = Field(gt=0)


class RobotConfig(_Model):
    """Everything needed to create, limit and describe one robot (single arm or bimanual pair)."""

    name: str
    driver: str
    connection: dict[str, Any] = Field(default_factory=dict)
    joints: list[str] = Field(min_length=1)
    hardware_limits: HardwareLimits
    limits: OperatingLimits
    control_rate_hz: float = Field(gt=0, le=1000)
    kinematics: KinematicsConfig
    workspace: WorkspaceBox
    grippers: list[GripperConfig] = Field(default_factory=list)
    stale_after_s: float = Field(default=0.1, gt=0, le=1.0)
    cameras: list[str] = Field(default_factory=list)

    @property
    def dof(self) -> int:
        return len(self.joints)

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def gripper_indices(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.grippers)

    @model_validator(mode="after")
    def _consistent(self) -> "RobotConfig":
        _check_shapes(self)
        _check_within_hardware(self)
        _check_kinematics_and_grippers(self)
        return self


# ------------------------------------------------------------------------------ cross-field checks


def _check_shapes(cfg: RobotConfig) -> None:
    n = cfg.dof
    per_dof = {
        "hardware_limits.position_min": cfg.hardware_limits.position_min,
        "hardware_limits.position_max": cfg.hardware_limits.position_max,
        "hardware_limits.velocity": cfg.hardware_limits.velocity,
        "hardware_limits.acceleration": cfg.hardware_limits.acceleration,
        "limits.position_min": cfg.limits.position_min,
        "limits.position_max": cfg.limits.position_max,
        "limits.velocity": cfg.limits.velocity,
        "limits.acceleration": cfg.limits.acceleration,
        "limits.max_step": cfg.limits.max_step,
    }
    for field, values in per_dof.items():
        if values is None:
            continue
        if len(values) != n:
            raise ValueError(f"{field} has {len(values)} values, expected one per joint ({n}: {cfg.joints})")
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise ValueError(f"{field}[{i}] ({cfg.joints[i]}) = {v} is not a finite number")
    for field in ("velocity", "acceleration"):
        for limits_name in ("hardware_limits", "limits"):
            values = getattr(getattr(cfg, limits_name), field)
            for i, v in enumerate(values):
                if v <= 0:
                    raise ValueError(f"{limits_name}.{field}[{i}] ({cfg.joints[i]}) = {v} must be > 0")
    for i, (lo, hi) in enumerate(zip(cfg.hardware_limits.position_min, cfg.hardware_limits.position_max)):
        if lo >= hi:
            raise ValueError(f"hardware_limits.position_min[{i}] = {lo} must be below position_max {hi}")
    if cfg.limits.max_step is not None and any(v <= 0 for v in cfg.limits.max_step):
        raise ValueError(f"limits.max_step must be > 0 for every joint, got {cfg.limits.max_step}")


def _check_within_hardware(cfg: RobotConfig) -> None:
    """Operating limits may only tighten: name the field, the value and the hardware limit."""
    hw, op, names = cfg.hardware_limits, cfg.limits, cfg.joints

    def above(field: str, i: int, value: float, hw_value: float, hw_field: str) -> ValueError:
        return ValueError(
            f"{field}[{i}] ({names[i]}) = {value} exceeds the arm's hardware limit {hw_value} "
            f"(hardware_limits.{hw_field}[{i}]); operating limits may only be tightened"
        )

    for i in range(cfg.dof):
        if op.velocity[i] > hw.velocity[i]:
            raise above("limits.velocity", i, op.velocity[i], hw.velocity[i], "velocity")
        if op.acceleration[i] > hw.acceleration[i]:
            raise above("limits.acceleration", i, op.acceleration[i], hw.acceleration[i], "acceleration")
        if op.position_min is not None and op.position_min[i] < hw.position_min[i]:
            raise ValueError(
                f"limits.position_min[{i}] ({names[i]}) = {op.position_min[i]} is below the arm's hardware "
                f"limit {hw.position_min[i]} (hardware_limits.position_min[{i}])"
            )
        if op.position_max is not None and op.position_max[i] > hw.position_max[i]:
            raise above("limits.position_max", i, op.position_max[i], hw.position_max[i], "position_max")
    if op.tcp_speed > hw.tcp_speed:
        raise ValueError(
            f"limits.tcp_speed = {op.tcp_speed} exceeds the arm's hardware limit {hw.tcp_speed} "
            "(hardware_limits.tcp_speed); operating limits may only be tightened"
        )
    lo = op.position_min if op.position_min is not None else hw.position_min
    hi = op.position_max if op.position_max is not None else hw.position_max
    for i in range(cfg.dof):
        if i in cfg.gripper_indices:
            continue  # gripper ranges come from `grippers`, not the joint margin
        if lo[i] + op.position_margin >= hi[i] - op.position_margin:
            raise ValueError(
                f"limits.position_margin = {op.position_margin} leaves no range for joint {i} ({names[i]}) "
                f"between {lo[i]} and {hi[i]}"
            )


def _check_kinematics_and_grippers(cfg: RobotConfig) -> None:
    grippers = set()
    for k, g in enumerate(cfg.grippers):
        where = f"grippers[{k}]"
        if g.index >= cfg.dof:
            raise ValueError(f"{where}.index = {g.index} is not a joint index (robot has {cfg.dof} DOF)")
        if g.index in grippers:
            raise ValueError(f"{where}.index = {g.index} listed twice")
        grippers.add(g.index)
        lo, hi = g.range
        if not lo < hi:
            raise ValueError(f"{where}.range = {g.range} must be [min, max] with min < max")
        if lo < cfg.hardware_limits.position_min[g.index] or hi > cfg.hardware_limits.position_max[g.index]:
            raise ValueError(
                f"{where}.range = {g.range} is outside the gripper's hardware range "
                f"[{cfg.hardware_limits.position_min[g.index]}, {cfg.hardware_limits.position_max[g.index]}]"
            )
        if g.max_rate > cfg.hardware_limits.velocity[g.index]:
            raise ValueError(
                f"{where}.max_rate = {g.max_rate} exceeds the gripper's hardware limit "
                f"{cfg.hardware_limits.velocity[g.index]} (hardware_limits.velocity[{g.index}])"
            )
    seen: set[int] = set()
    for k, arm in enumerate(cfg.kinematics.arms):
        for j in arm.joint_indices:
            if not 0 <= j < cfg.dof:
                raise ValueError(f"kinematics.arms[{k}].joint_indices: {j} is not a joint index (0..{cfg.dof - 1})")
            if j in grippers:
                raise ValueError(f"kinematics.arms[{k}].joint_indices: {j} is a gripper, not an arm joint")
            if j in seen:
                raise ValueError(f"kinematics.arms[{k}].joint_indices: {j} belongs to two arms")
            seen.add(j)
    missing = sorted(set(range(cfg.dof)) - seen - grippers)
    if missing:
        raise ValueError(f"joints {[cfg.joints[i] for i in missing]} are neither in kinematics.arms nor grippers")
    from .kinematics import RobotKinematics  # late: kinematics imports these models

    try:
        RobotKinematics(cfg.kinematics)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


# ---------------------------------------------------------------------------------------- loading


def _format_validation_error(where: str, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    got_text = "" if isinstance(got, (dict, type(None))) or not loc else f" (got {got!r})"
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return ConfigError(f"{where}: {loc}" if loc else where, f"{msg}{got_text}")


def parse_robot_config(data: dict[str, Any], where: str) -> RobotConfig:
    """Validate a fully merged config mapping; `where` names the source in error messages."""
    if not isinstance(data, dict):
        raise ConfigError(where, f"expected a mapping of robot settings, got {type(data).__name__}")
    try:
        return RobotConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(where, exc) from None
    except ConfigError:
        raise


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML mapping, turning I/O and syntax problems into ConfigError naming the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read robot config: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), f"expected a mapping of robot settings, got {type(data).__name__}")
    return data


def load_robot_config(name_or_path: str | Path) -> RobotConfig:
    """`--robot NAME` or `--robot-config FILE`: a registry name, or a YAML file whose `robot:` key
    names the registry robot whose defaults it overlays."""
    from .registry import is_known_robot, load_overlay_config, load_registered_config

    if isinstance(name_or_path, str) and is_known_robot(name_or_path):
        return load_registered_config(name_or_path)
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        # Looks like a robot name, not a file: let the registry produce the "known robots" error.
        return load_registered_config(str(name_or_path))
    return load_overlay_config(path)
