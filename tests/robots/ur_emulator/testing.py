"""Test-side helpers shared by the UR3 driver tests (imports vla_edge; the emulator process does not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def ur3_config(host: str, control_rate_hz: float | None = None, **connection: Any):
    """The shipped UR3 config pointed at `host` (an emulator's loopback address), with overrides."""
    import vla_edge.robots as robots_pkg
    from vla_edge.robots.config import parse_robot_config, read_yaml

    path = Path(robots_pkg.__file__).resolve().parent / "ur3" / "config.yaml"
    data = read_yaml(path)
    data.update(name="ur3", driver="ur3")
    # The emulator is a Python process on a shared, loaded test machine: give its stream more
    # slack than a real controller needs, so a scheduling hiccup is not read as a stale link.
    data["stale_after_s"] = 0.5
    if control_rate_hz is not None:
        data["control_rate_hz"] = control_rate_hz
    data["connection"] = {"host": host, "connect_timeout_s": 0.5, **connection}
    return parse_robot_config(data, str(path))
