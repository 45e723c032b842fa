"""The robot YAML's filter limits as a plain "key value..." text file for C/C++ programs.

Vendor code fills a vla_edge_filter_config (vla_edge_safety.h) from it (examples/filter_replay.c
has a complete reader); presets are resolved to their DH tables / joint chains, so the C side
needs no YAML library and no preset table. Written by `vla-edge robot export-filter`.
"""

from __future__ import annotations

from ..config import RobotConfig
from .native import filter_spec

FORMAT_LINE = "# vla-edge filter config v1: one field per line, SI units, see docs/embedding.md"

_SCALARS = ("dof", "control_rate_hz", "stale_after_s", "hardware_tcp_speed", "position_margin", "tcp_speed",
            "tracking_error")
_ARRAYS = ("hardware_position_min", "hardware_position_max", "hardware_velocity", "hardware_acceleration",
           "position_min", "position_max", "velocity", "acceleration", "max_step", "workspace_min", "workspace_max")


def _line(key: str, values) -> str:
    return " ".join([key, *(str(v) if isinstance(v, int) else repr(float(v)) for v in values)])


def filter_config_text(config: RobotConfig) -> str:
    """Every field of the filter's configuration; float repr round-trips exactly through strtod."""
    spec = filter_spec(config)
    lines = [FORMAT_LINE, f"# robot {config.name}"]
    lines += [_line(k, [getattr(spec, k)]) for k in _SCALARS]
    lines += [_line(k, getattr(spec, k)) for k in _ARRAYS if len(getattr(spec, k))]  # empty: not set
    lines += [_line("gripper", [g.index, g.range_min, g.range_max, g.max_rate]) for g in spec.grippers]
    for arm in spec.arms:
        lines.append(_line("arm_dh" if arm.is_dh else "arm_chain", list(arm.joint_indices)))
        if arm.is_dh:
            fields = [("dh_a", arm.dh_a), ("dh_alpha", arm.dh_alpha), ("dh_d", arm.dh_d), ("dh_theta_offset", arm.dh_theta_offset)]
        else:
            fields = [(k, [x for row in getattr(arm, k) for x in row]) for k in ("chain_xyz", "chain_rpy", "chain_axis")]
        lines += [_line(k, v) for k, v in fields if len(v)]
        lines += [_line(k, getattr(arm, k)) for k in ("base_xyz", "base_rpy", "tool_xyz")]
    return "\n".join(lines) + "\n"
