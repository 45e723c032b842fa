"""The ARX5 driver's `connection:` settings, validated once with errors naming the key.

Single arm:  {interface: can0}.  Bimanual: {left_interface: can0, right_interface: can1}.
Optional: can_backend (python-can interface, default socketcan; tests use virtual),
motor_profile (X5 | L5, default X5), kp / kd (6 values), gripper_kp / gripper_kd,
feedback_timeout_s (how long read_state waits for motor answers, default 0.05).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ...errors import ConfigError
from .motors import PROFILES, ArmMotors

_COMMON = {"can_backend", "motor_profile", "kp", "kd", "gripper_kp", "gripper_kd", "feedback_timeout_s"}


@dataclass(frozen=True)
class ArxSettings:
    channels: tuple[str, ...]  # one CAN interface per arm, arm order
    can_backend: str
    motors: ArmMotors
    feedback_timeout_s: float


def _number(conn: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = conn.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi:
        raise ConfigError(f"connection.{key}", f"expected a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def _gains(conn: dict[str, Any], key: str, default: tuple[float, ...], hi: float) -> tuple[float, ...]:
    v = conn.get(key, list(default))
    if (
        not isinstance(v, (list, tuple))
        or len(v) != len(default)
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= hi for x in v)
    ):
        raise ConfigError(f"connection.{key}", f"expected {len(default)} numbers in [0, {hi}], got {v!r}")
    return tuple(float(x) for x in v)


def parse_arx_settings(connection: dict[str, Any] | None, n_arms: int) -> ArxSettings:
    conn = dict(connection or {})
    channel_keys = ["interface"] if n_arms == 1 else ["left_interface", "right_interface"]
    if n_arms > 2:
        raise ConfigError("kinematics.arms", f"the ARX5 driver drives one or two arms, config has {n_arms}")
    unknown = sorted(set(conn) - _COMMON - set(channel_keys))
    if unknown:
        raise ConfigError(
            f"connection.{unknown[0]}", f"unknown ARX5 setting; known: {', '.join(channel_keys + sorted(_COMMON))}"
        )
    channels = []
    for key in channel_keys:
        ch = conn.get(key)
        if not isinstance(ch, str) or not ch:
            raise ConfigError(f"connection.{key}", f"expected the CAN interface name (e.g. can0), got {ch!r}")
        channels.append(ch)
    if len(set(channels)) != len(channels):
        raise ConfigError("connection", f"each arm needs its own CAN interface (motor ids repeat), got {channels}")
    backend = conn.get("can_backend", "socketcan")
    if not isinstance(backend, str) or not backend:
        raise ConfigError("connection.can_backend", f"expected a python-can interface name, got {backend!r}")
    profile = conn.get("motor_profile", "X5")
    if profile not in PROFILES:
        raise ConfigError("connection.motor_profile", f"expected one of {sorted(PROFILES)}, got {profile!r}")
    base = PROFILES[profile]
    motors = replace(
        base,
        kp=_gains(conn, "kp", base.kp, 500.0),
        kd=_gains(conn, "kd", base.kd, 5.0),  # DM kd range is [0, 5]; EC allows 50 but one bound keeps it simple
        gripper_kp=_number(conn, "gripper_kp", base.gripper_kp, 0.0, 500.0),
        gripper_kd=_number(conn, "gripper_kd", base.gripper_kd, 0.0, 5.0),
    )
    timeout = _number(conn, "feedback_timeout_s", 0.05, 0.001, 1.0)
    return ArxSettings(tuple(channels), backend, motors, timeout)
