"""The simulator's `connection:` settings: validated once, with errors naming the key."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from .operator import OPERATORS
from .render import RENDER_MODES

_KEYS = {
    "render": "one of auto, off, required (default auto)",
    "image_size": "[height, width] in pixels (default [224, 224])",
    "realtime": "true: the sim runs on the wall clock in a thread; false: sim time advances one "
    "control period per command (tests)",
    "timestep": "physics step in seconds (default 0.002)",
    "seed": "integer seed for object placement (default 0)",
    "initial_q": "one start position per DOF (default: 0 clipped into the operating range)",
    "operator": "demo: in shadow mode the arm repeats the demo policy's demonstration (a reach toward the "
    "red cube and back), like an operator moving the arm during a shadow trial (default: none, the arm stays put)",
}


@dataclass(frozen=True)
class SimSettings:
    render: str = "auto"
    image_height: int = 224
    image_width: int = 224
    realtime: bool = True
    timestep: float = 0.002
    seed: int = 0
    initial_q: tuple[float, ...] | None = None
    operator: str | None = None


def parse_sim_settings(connection: dict[str, Any] | None, dof: int) -> SimSettings:
    """`connection:` mapping of a *-sim robot -> SimSettings; ConfigError on anything unexpected."""
    conn = dict(connection or {})
    unknown = sorted(set(conn) - set(_KEYS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in _KEYS.items())
        raise ConfigError(f"connection.{unknown[0]}", f"unknown simulator setting; known settings: {known}")
    render = conn.get("render", "auto")
    if render not in RENDER_MODES:
        raise ConfigError("connection.render", f"expected one of {', '.join(RENDER_MODES)}, got {render!r}")
    size = conn.get("image_size", [224, 224])
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 2048 for v in size)
    ):
        raise ConfigError("connection.image_size", f"expected [height, width] integers in 8..2048, got {size!r}")
    realtime = conn.get("realtime", True)
    if not isinstance(realtime, bool):
        raise ConfigError("connection.realtime", f"expected true or false, got {realtime!r}")
    timestep = conn.get("timestep", 0.002)
    if not isinstance(timestep, (int, float)) or isinstance(timestep, bool) or not 1e-4 <= timestep <= 0.01:
        raise ConfigError("connection.timestep", f"expected seconds in [0.0001, 0.01], got {timestep!r}")
    seed = conn.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError("connection.seed", f"expected an integer, got {seed!r}")
    initial_q = conn.get("initial_q")
    if initial_q is not None:
        if not isinstance(initial_q, (list, tuple)) or len(initial_q) != dof:
            raise ConfigError("connection.initial_q", f"expected a list of {dof} numbers (one per DOF), got {initial_q!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in initial_q):
            raise ConfigError("connection.initial_q", f"expected finite numbers, got {initial_q!r}")
        initial_q = tuple(float(v) for v in initial_q)
    operator = conn.get("operator")
    if operator is not None and operator not in OPERATORS:
        raise ConfigError("connection.operator", f"expected one of {', '.join(OPERATORS)} (or leave it out), got {operator!r}")
    return SimSettings(render, size[0], size[1], realtime, float(timestep), seed, initial_q, operator)
