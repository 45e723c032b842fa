"""UR3 connection settings (`RobotConfig.connection`) and the reachability probe.

The probe exists because ur_rtde's constructors block inside C++ while holding the GIL: a
controller that is off or mistyped would otherwise surface as a raw RuntimeError (refused) or a
multi-minute TCP timeout (unroutable). A short Python-side connect to each port first turns both
into one clear error, before any ur_rtde object exists and before anything can move.
"""

from __future__ import annotations

import socket
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import ConfigError, VlaEdgeError

# ur_rtde hard-codes these ports (RTDEReceive/ControlInterface, DashboardClient, ScriptClient).
RTDE_PORT = 30004
DASHBOARD_PORT = 29999
SCRIPT_PORT = 30003
PORT_NAMES = {RTDE_PORT: "RTDE", DASHBOARD_PORT: "dashboard", SCRIPT_PORT: "script (secondary interface)"}


class URConnectionError(VlaEdgeError):
    """The controller cannot be reached or refused the session; nothing was commanded."""


class UR3Connection(BaseModel):
    """Keys of `connection:` in the UR3 robot YAML. Ranges are the controller's servoj() limits
    (UR script manual; ur_rtde checks the same bounds), so a bad value fails at load time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="controller IP or host name")
    rtde_frequency: float | None = Field(
        default=None, description="receive-stream rate, 125 (CB3) or 500 (e-Series); None = ask the controller"
    )
    lookahead_time: float = Field(default=0.1, ge=0.03, le=0.2, description="servoj lookahead, s")
    gain: float = Field(default=300.0, ge=100.0, le=2000.0, description="servoj proportional gain")
    servo_speed: float = Field(default=0.5, ge=0.0, le=3.14, description="servoj speed argument, rad/s")
    servo_acceleration: float = Field(default=0.5, ge=0.0, le=40.0, description="servoj acceleration, rad/s^2")
    stop_deceleration: float = Field(default=2.0, gt=0.0, le=40.0, description="servoStop/stopJ decel, rad/s^2")
    connect_timeout_s: float = Field(default=2.0, gt=0.0, le=30.0, description="per-port reachability probe")
    watchdog_min_hz: float = Field(
        default=0.0, ge=0.0, le=500.0,
        description="if > 0, the controller stops the control script when commands arrive slower than this",
    )
    reconnect_attempts: int = Field(default=3, ge=0, le=20, description="receive-link reconnects per read")
    reconnect_backoff_s: float = Field(default=0.2, gt=0.0, le=5.0, description="first backoff, doubles")


def parse_connection(connection: dict[str, Any], control_rate_hz: float, where: str = "connection") -> UR3Connection:
    """Validate the connection mapping; errors name `connection.<key>` and the allowed range."""
    try:
        parsed = UR3Connection.model_validate(connection or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        got = "" if first["type"] == "missing" else f" (got {first.get('input')!r})"
        raise ConfigError(f"{where}.{key}" if key else where, f"{msg}{got}") from None
    if parsed.rtde_frequency is not None and parsed.rtde_frequency not in (125.0, 500.0):
        raise ConfigError(
            f"{where}.rtde_frequency",
            f"expected 125 (CB3) or 500 (e-Series) or null, got {parsed.rtde_frequency}",
        )
    max_rate = parsed.rtde_frequency or 500.0
    if control_rate_hz > max_rate:
        raise ConfigError(
            "control_rate_hz",
            f"{control_rate_hz} Hz is faster than the controller stream ({max_rate} Hz, connection.rtde_frequency)",
        )
    return parsed


def probe(host: str, ports: tuple[int, ...], timeout_s: float) -> None:
    """Open and close a TCP connection to each port; raise URConnectionError naming the first
    one that fails, with what to check."""
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
        except OSError as exc:
            reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
            raise URConnectionError(
                f"UR controller {host}:{port} ({PORT_NAMES.get(port, 'port')}) is unreachable: {reason} "
                f"after {timeout_s:g} s. Check connection.host, that the controller is powered on and booted, "
                f"and that ports {RTDE_PORT}, {DASHBOARD_PORT}, {SCRIPT_PORT} are reachable from this machine. "
                "Nothing was commanded."
            ) from None
