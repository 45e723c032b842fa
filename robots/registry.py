"""Robot names -> (shipped YAML, driver). Adding a robot is one folder plus one line here.

Drivers are referenced by dotted module path and imported only when a robot is created, so
listing robots or validating a config never imports MuJoCo, ur_rtde or python-can.
Driver convention: the module exposes `make_robot(config: RobotConfig, shadow: bool) -> Robot`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, VlaEdgeError
from .base import Robot
from .config import RobotConfig, parse_robot_config, read_yaml

_ROBOTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class RobotEntry:
    """One selectable robot: its default YAML, which driver runs it, and what the entry overrides."""

    name: str
    config_file: Path
    driver: str
    driver_module: str
    overrides: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_SIM_CONNECTION: dict[str, Any] = {}  # simulators validate/default their own connection settings

_ENTRIES: tuple[RobotEntry, ...] = (
    RobotEntry("ur3", _ROBOTS_DIR / "ur3" / "config.yaml", "ur3", "vla_edge.robots.ur3.driver",
               description="Universal Robots UR3 / UR3e over RTDE"),
    RobotEntry("ur3-sim", _ROBOTS_DIR / "ur3" / "config.yaml", "ur3-sim", "vla_edge.robots.sim.robot",
               {"connection": _SIM_CONNECTION}, "UR3 in MuJoCo (same limits as the real arm)"),
    RobotEntry("arx5", _ROBOTS_DIR / "arx5" / "config.yaml", "arx5", "vla_edge.robots.arx5.driver",
               description="ARX5 (X5/R5) arm with gripper over CAN"),
    RobotEntry("arx5-sim", _ROBOTS_DIR / "arx5" / "config.yaml", "arx5-sim", "vla_edge.robots.sim.robot",
               {"connection": _SIM_CONNECTION}, "ARX5 in MuJoCo"),
    RobotEntry("arx5-bimanual", _ROBOTS_DIR / "arx5" / "bimanual.yaml", "arx5", "vla_edge.robots.arx5.driver",
               description="two ARX5 arms with grippers (two CAN buses)"),
    RobotEntry("arx5-bimanual-sim", _ROBOTS_DIR / "arx5" / "bimanual.yaml", "arx5-sim",
               "vla_edge.robots.sim.robot", {"connection": _SIM_CONNECTION}, "two ARX5 arms in MuJoCo"),
)
_BY_NAME = {e.name: e for e in _ENTRIES}


def list_robots() -> list[str]:
    """Names accepted by `--robot`."""
    return [e.name for e in _ENTRIES]


def is_known_robot(name: str) -> bool:
    return name in _BY_NAME


def is_simulator(name: str) -> bool:
    """A registered MuJoCo simulator (the demo's scripted operator can move it in shadow mode)."""
    return name in _BY_NAME and _BY_NAME[name].driver_module == "vla_edge.robots.sim.robot"


def robot_entry(name: str) -> RobotEntry:
    """The registry entry for `name`; unknown names list the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError("--robot", f"unknown robot {name!r}; known robots: {', '.join(list_robots())}") from None


def _entry_defaults(entry: RobotEntry) -> dict[str, Any]:
    data = read_yaml(entry.config_file)
    data.update({"name": entry.name, "driver": entry.driver})
    data.update(entry.overrides)
    return data


def load_registered_config(name: str) -> RobotConfig:
    """The shipped configuration of a registry robot, validated."""
    entry = robot_entry(name)
    return parse_robot_config(_entry_defaults(entry), str(entry.config_file))


# Keys of a user file that may not change what the shipped YAML says about the hardware.
_FIXED_KEYS = ("hardware_limits", "driver", "joints")


def _overlay(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings (lists and `connection` are replaced whole). Unknown keys survive the
    merge on purpose so that validation rejects them with their full key path."""
    merged = dict(base)
    for key, value in user.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "connection":
            merged[key] = _overlay(base[key], value)
        else:
            merged[key] = value
    return merged


def load_overlay_config(path: Path) -> RobotConfig:
    """`--robot-config FILE`: the file names a registry robot under `robot:` and overrides any of
    its operating settings. Unknown keys and hardware limits are rejected with the key path."""
    user = read_yaml(path)
    where = str(path)
    robot_name = user.pop("robot", None)
    if not isinstance(robot_name, str):
        raise ConfigError(
            f"{where}: robot",
            f"missing: name the robot whose defaults this file overrides (one of {', '.join(list_robots())})",
        )
    if not is_known_robot(robot_name):
        raise ConfigError(f"{where}: robot", f"unknown robot {robot_name!r}; known robots: {', '.join(list_robots())}")
    for key in _FIXED_KEYS:
        if key in user:
            raise ConfigError(f"{where}: {key}", f"cannot be overridden; it is fixed by robot {robot_name!r}")
    entry = robot_entry(robot_name)
    base = _entry_defaults(entry)
    # Optional keys absent from the shipped YAML are still legal to set.
    for optional in ("connection", "grippers", "cameras", "stale_after_s", "name"):
        base.setdefault(optional, None)
    merged = _overlay(base, user)
    merged = {k: v for k, v in merged.items() if v is not None}
    merged["driver"] = entry.driver
    return parse_robot_config(merged, where)


def create_robot(config: RobotConfig, shadow: bool) -> Robot:
    """Instantiate the driver for `config` (not yet connected). Shadow drivers have no motion path."""
    entries = [e for e in _ENTRIES if e.driver == config.driver]
    if not entries:
        raise ConfigError("driver", f"unknown driver {config.driver!r}; known: {sorted({e.driver for e in _ENTRIES})}")
    module_name = entries[0].driver_module
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise VlaEdgeError(f"robot {config.name!r}: driver not available: {module_name} ({exc})") from None
    factory = getattr(module, "make_robot", None)
    if not callable(factory):
        raise VlaEdgeError(f"robot {config.name!r}: driver not available: {module_name} has no make_robot()")
    robot = factory(config, shadow)
    if not isinstance(robot, Robot):
        raise VlaEdgeError(f"robot {config.name!r}: {module_name}.make_robot returned {type(robot).__name__}, not a Robot")
    return robot
