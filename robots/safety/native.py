"""The safety filter's C++ core (vla_edge._safety) and the translation of a RobotConfig into it.

There is one implementation of the filter's decisions: native/src/safety/, compiled into
libvla_edge_safety (C ABI, vla_edge_safety.h) and into vla_edge._safety (this module's backend).
Without it the filter fails closed: nothing here falls back to a second Python copy.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..config import RobotConfig
from ..kinematics.forward import resolve_arm
from .errors import SafetyError

_MISSING_HINT = (
    "the safety filter's native core vla_edge._safety is not available ({reason}); refusing to drive or "
    "simulate a robot without it. Reinstall with a C++17 compiler and CMake (`pip install .` builds it; "
    "it does not need ggml, so VLA_EDGE_BUILD_NATIVE=0 still builds it)"
)


def load_core() -> ModuleType:
    """Import vla_edge._safety or raise SafetyError saying why and how to get it."""
    try:
        return importlib.import_module("vla_edge._safety")
    except ImportError as exc:
        raise SafetyError(_MISSING_HINT.format(reason=exc)) from None


def filter_spec(config: RobotConfig):  # -> vla_edge._safety.FilterSpec
    """The YAML's numbers as the C++ core takes them (presets resolved to DH tables / chains)."""
    core = load_core()
    hw, op = config.hardware_limits, config.limits
    spec = core.FilterSpec()
    spec.dof = config.dof
    spec.control_rate_hz = float(config.control_rate_hz)
    spec.stale_after_s = float(config.stale_after_s)
    spec.hardware_position_min = list(hw.position_min)
    spec.hardware_position_max = list(hw.position_max)
    spec.hardware_velocity = list(hw.velocity)
    spec.hardware_acceleration = list(hw.acceleration)
    spec.hardware_tcp_speed = float(hw.tcp_speed)
    spec.position_min = list(op.position_min or [])
    spec.position_max = list(op.position_max or [])
    spec.position_margin = float(op.position_margin)
    spec.velocity = list(op.velocity)
    spec.acceleration = list(op.acceleration)
    spec.max_step = list(op.max_step or [])
    spec.tcp_speed = float(op.tcp_speed)
    spec.tracking_error = float(op.tracking_error)
    spec.workspace_min = list(config.workspace.min)
    spec.workspace_max = list(config.workspace.max)
    grippers = []
    for g in config.grippers:
        gs = core.GripperSpec()
        gs.index, gs.range_min, gs.range_max, gs.max_rate = g.index, g.range[0], g.range[1], g.max_rate
        grippers.append(gs)
    spec.grippers = grippers
    spec.arms = [_arm_spec(core, i, arm) for i, arm in enumerate(config.kinematics.arms)]
    return spec


def _arm_spec(core: ModuleType, index: int, arm):
    resolved = resolve_arm(index, arm)
    spec = core.ArmSpec()
    spec.joint_indices = list(arm.joint_indices)
    spec.base_xyz, spec.base_rpy, spec.tool_xyz = list(arm.base_xyz), list(arm.base_rpy), list(resolved.tool_xyz)
    if resolved.dh is not None:
        spec.is_dh = True
        spec.dh_a, spec.dh_alpha, spec.dh_d = list(resolved.dh.a), list(resolved.dh.alpha), list(resolved.dh.d)
        spec.dh_theta_offset = list(resolved.dh.theta_offset or [])
    else:
        spec.is_dh = False
        spec.chain_xyz = [list(j.xyz) for j in resolved.chain]
        spec.chain_rpy = [list(j.rpy) for j in resolved.chain]
        spec.chain_axis = [list(j.axis) for j in resolved.chain]
    return spec
