"""The real UR3 / UR3e driver, through ur_rtde (RTDE receive + control interfaces).

Shadow mode is structural: `connect()` only ever creates an RTDEReceiveInterface (read-only
RTDE outputs; no dashboard, no script upload, no input registers), and `open_motion()` refuses
in shadow mode, so no code path can construct the control interface.

Live mode: `open_motion()` starts the control worker (a child process owning ur_rtde's
RTDEControlInterface: dashboard + script upload + RTDE inputs), returns a `URMotionPort`, starts
a link monitor and arms the exit guard (SIGINT, atexit). `disconnect()` (also
the context manager's exit) stops motion, ends the control script and releases every socket.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import numpy as np

from ...errors import ConfigError, VlaEdgeError
from ..base import JointState, MotionPort, Robot, RobotCapabilities
from ..config import RobotConfig
from .connection import DASHBOARD_PORT, RTDE_PORT, SCRIPT_PORT, URConnectionError, parse_connection, probe
from .control_process import ControlProcess, ControlWorkerError
from .exit_guard import ExitGuard
from .motion import URMotionPort

RUNTIME_PLAYING = 2  # RTDE runtime_state while a program runs
MONITOR_PERIOD_S = 0.004  # link monitor poll; well under the 100 ms a script re-upload takes
CONTROL_START_TIMEOUT_S = 15.0  # script upload + program start; ur_rtde itself gives up after 5 s

# The outputs the driver reads; asking for these only keeps the stream small at 500 Hz.
RECEIVE_VARIABLES = [
    "timestamp", "actual_q", "actual_qd", "actual_TCP_pose", "target_q", "robot_mode", "safety_mode",
    "runtime_state", "robot_status_bits", "safety_status_bits",
]


class UR3Robot(Robot):
    """One UR arm (6 DOF, no gripper) driven over RTDE."""

    def __init__(self, config: RobotConfig, shadow: bool = True):
        if config.dof != 6 or config.gripper_indices:
            raise ConfigError(
                "joints", f"the UR3 driver drives exactly 6 arm joints and no gripper, got {config.joints}"
            )
        self.name = config.name
        self.shadow = shadow
        self._config = config
        self._settings = parse_connection(config.connection, config.control_rate_hz)
        self._caps = RobotCapabilities(
            joint_names=tuple(config.joints),
            control_rate_hz=config.control_rate_hz,
            arms=1,
            camera_names=tuple(config.cameras),
        )
        self._receive: Any = None
        self._control: Any = None
        self._port: URMotionPort | None = None
        self._monitor_thread: threading.Thread | None = None
        self._epoch = 0  # bumped whenever the receive link is re-established
        self._last_controller_time = math.nan
        self._last_fresh = 0.0
        self._lock = threading.RLock()
        self._guard = ExitGuard(self._stop_motion, at_exit=self.disconnect)

    @property
    def capabilities(self) -> RobotCapabilities:
        return self._caps

    @property
    def has_control_interface(self) -> bool:
        return self._control is not None

    # -- read path -------------------------------------------------------------------------
    def connect(self) -> None:
        if self._receive is not None:
            return
        s = self._settings
        probe(s.host, (RTDE_PORT,), s.connect_timeout_s)
        try:
            import rtde_receive  # noqa: PLC0415 - imported on connect so configs validate without ur_rtde
        except ImportError as exc:
            why = ("ur_rtde 1.6.5 publishes no wheel for this Python " + sys.version.split()[0] + "; use Python 3.11 or 3.12"
                   if sys.version_info >= (3, 13) else "pip install ur_rtde==1.6.5")
            raise VlaEdgeError(f"the UR3 driver needs ur_rtde ({why}): {exc}") from None
        try:
            self._receive = rtde_receive.RTDEReceiveInterface(
                s.host, s.rtde_frequency or -1.0, RECEIVE_VARIABLES
            )
        except RuntimeError as exc:
            raise URConnectionError(f"UR controller {s.host}:{RTDE_PORT}: RTDE receive setup failed: {exc}") from None
        self._last_fresh = time.monotonic()

    def read_state(self) -> JointState:
        with self._lock:
            if self._receive is None:
                raise URConnectionError(f"UR3 {self._settings.host}: read_state() before connect()")
            if not self._receive.isConnected():
                self._reconnect_receive()
            r = self._receive
            controller_time = float(r.getTimestamp())
            now = time.monotonic()
            if controller_time != self._last_controller_time:
                self._last_controller_time, self._last_fresh = controller_time, now
            status: dict[str, object] = {
                "robot_mode": int(r.getRobotMode()),
                "safety_mode": int(r.getSafetyMode()),
                "runtime_state": int(r.getRuntimeState()),
                "protective_stop": bool(r.isProtectiveStopped()),
                "emergency_stop": bool(r.isEmergencyStopped()),
                "controller_time": controller_time,
                "link_epoch": self._epoch,
                "motion_open": self._port is not None and self._port.dead_reason is None,
            }
            return JointState(
                q=_six(r.getActualQ()),
                qd=_six(r.getActualQd()),
                timestamp=self._last_fresh,  # when the controller last produced new data
                tcp_pose=_six(r.getActualTCPPose()),
                status=status,
            )

    def _reconnect_receive(self) -> None:
        """Bring the receive stream back with backoff. Any open motion port is tripped first: the
        arm is never commanded over a link that was re-established behind the caller's back."""
        self._epoch += 1
        if self._port is not None:
            self._port.trip("receive connection lost")
        s = self._settings
        delay = s.reconnect_backoff_s
        last_error = "no attempt allowed (connection.reconnect_attempts = 0)"
        for _ in range(s.reconnect_attempts):
            time.sleep(delay)
            delay = min(delay * 2.0, 2.0)
            try:
                probe(s.host, (RTDE_PORT,), s.connect_timeout_s)
                if self._receive.reconnect() and self._receive.isConnected():
                    self._last_fresh = time.monotonic()
                    return
                last_error = "reconnect returned without a stream"
            except (URConnectionError, RuntimeError) as exc:
                last_error = str(exc)
        raise URConnectionError(
            f"UR controller {s.host}: receive connection lost and {s.reconnect_attempts} reconnect attempts failed "
            f"({last_error})"
        )

    def _link_problem(self, epoch: int) -> str | None:
        """Why the link a port was opened on is no longer trustworthy, or None.

        Besides the socket, the control script must have been PLAYING the whole time: ur_rtde
        re-uploads it when it reconnects its control socket on its own, and the program is
        STOPPED for at least 100 ms while it does; the monitor polls fast enough to see that."""
        with self._lock:
            if epoch != self._epoch:
                return "receive link was re-established after motion was opened"
            r = self._receive
            if r is None or not r.isConnected():
                return "receive connection lost"
            controller_time = float(r.getTimestamp())
            now = time.monotonic()
            if controller_time != self._last_controller_time:
                self._last_controller_time, self._last_fresh = controller_time, now
            elif now - self._last_fresh > self._config.stale_after_s:
                return f"controller stream stale for {now - self._last_fresh:.3f} s"
            runtime_state = int(r.getRuntimeState())
            if runtime_state != RUNTIME_PLAYING:
                return f"control script not running on the controller (runtime_state {runtime_state})"
            return None

    def _monitor(self, port: URMotionPort, epoch: int) -> None:
        """Watch the link while a port is open, so a drop is caught between commands too (and
        while the loop is idle). Holds no lock while killing the port (lock order: port, robot)."""
        while self._port is port and port.dead_reason is None:
            problem = self._link_problem(epoch)
            if problem is not None:
                port.kill(problem)
                return
            time.sleep(MONITOR_PERIOD_S)

    # -- motion path -----------------------------------------------------------------------
    def open_motion(self) -> MotionPort:
        if self.shadow:
            raise VlaEdgeError("UR3 is in shadow mode: it has no motion path (no control interface is created)")
        with self._lock:
            if self._receive is None:
                raise URConnectionError(f"UR3 {self._settings.host}: open_motion() before connect()")
            if self._port is not None and self._port.dead_reason is None:
                raise VlaEdgeError("UR3 motion is already open; one motion port at a time")
            self._release_control()
            s = self._settings
            probe(s.host, (DASHBOARD_PORT, SCRIPT_PORT, RTDE_PORT), s.connect_timeout_s)
            try:
                self._control = ControlProcess(
                    s.host, self._config.control_rate_hz, s.stop_deceleration, CONTROL_START_TIMEOUT_S
                )
            except ControlWorkerError as exc:
                raise URConnectionError(
                    f"UR controller {s.host}: control interface setup failed: {exc}. On e-Series, enable "
                    "Remote Control on the pendant; check no other RTDE client owns input registers 0-23."
                ) from None
            epoch = self._epoch
            port = URMotionPort(
                self._control, s, self._config.control_period_s,
                link_ok=lambda: self._link_problem(epoch), on_dead=self._port_died,
            )
            self._port = port
            self._monitor_thread = threading.Thread(
                target=self._monitor, args=(port, epoch), daemon=True, name="ur3-link-monitor"
            )
            self._monitor_thread.start()
            self._guard.arm()
            return port

    def _port_died(self, port: URMotionPort) -> None:
        """Called once per port when it dies: end the control session at once (SIGKILL of the
        worker closes its sockets), so ur_rtde cannot reconnect it behind the caller's back."""
        if port is self._port:
            self._release_control()

    def _release_control(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            control.kill()

    def _stop_motion(self) -> None:
        """Exit-guard action (SIGINT, atexit): stop and end the motion session."""
        port = self._port
        if port is not None and port.dead_reason is None:
            port.close()

    def disconnect(self) -> None:
        """Stop (servoStop + stopJ), end the control script, close every connection. Safe to call
        on any path, repeatedly."""
        port = self._port
        try:
            if port is not None:
                port.close()  # port lock only: never hold the robot lock while taking it
        finally:
            self._port = None
            monitor, self._monitor_thread = self._monitor_thread, None
            if monitor is not None and monitor is not threading.current_thread():
                monitor.join(timeout=1.0)
            with self._lock:
                self._release_control()
                self._guard.release()
                receive, self._receive = self._receive, None
                if receive is not None:
                    try:
                        receive.disconnect()
                    except RuntimeError:
                        pass


def _six(values: Any) -> np.ndarray:
    """ur_rtde returns lists; a missing/short value becomes NaN so downstream checks fail closed."""
    arr = np.asarray(values, dtype=float)
    return arr if arr.shape == (6,) else np.full(6, math.nan)


def make_robot(config: RobotConfig, shadow: bool) -> Robot:
    """Registry entry point (`vla_edge.robots.registry`)."""
    return UR3Robot(config, shadow)
