"""The emulated UR controller: joint state, the rtde_control script's command handshake, and a
log of every command that reached it.

The uploaded ur_rtde control script is not interpreted; its main loop is reproduced from the
public script's behaviour: it reads the command id from input_int_register_0, reports
1 (ready) / 2 (done with command) in output_int_register_0, treats servo/speed commands as
real-time (process, then ready again) and everything else as one-shot (process once, report
done, wait until the client clears the register). Motion is integrated kinematically: servoJ is a
first-order tracker with time constant = lookahead time, speed-limited; no dynamics, no gain.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from .kinematics import ur3_tcp_pose

# ur_rtde command ids (input_int_register_0), from ur_rtde's RobotCommand::Type.
COMMAND_NAMES = {
    1: "moveJ", 2: "moveJ_IK", 3: "moveL", 4: "moveL_FK", 6: "forceMode", 7: "forceModeStop",
    9: "speedJ", 10: "speedL", 11: "servoJ", 12: "servoC", 15: "speedStop", 16: "servoStop",
    18: "teachMode", 19: "endTeachMode", 24: "servoL", 31: "triggerProtectiveStop", 33: "stopL",
    34: "stopJ", 35: "setWatchdog", 41: "jogStart", 42: "jogStop", 45: "movePath",
    51: "moveUntilContact", 52: "freedriveMode", 99: "kickWatchdog", 255: "stopScript",
}
MOTION_COMMANDS = {1, 2, 3, 4, 6, 9, 10, 11, 12, 18, 24, 41, 45, 51, 52}
STOP_COMMANDS = {7, 15, 16, 19, 31, 33, 34, 42, 255}
REALTIME_COMMANDS = {24, 11, 9, 10, 6, 25, 26, 27, 38, 58}

ROBOT_MODE_RUNNING = 7
SAFETY_NORMAL, SAFETY_PROTECTIVE_STOP = 1, 3
RUNTIME_STOPPED, RUNTIME_PLAYING = 1, 2
MAX_JOINT_SPEED = 3.14  # rad/s, UR joint speed limit used by ur_rtde's argument checks


@dataclass(frozen=True)
class Series:
    version: tuple[int, int, int, int]
    rate_hz: float
    polyscope: str


CB3 = Series((3, 15, 7, 106331), 125.0, "URSoftware 3.15.7.106331 (Apr 28 2021)")
E_SERIES = Series((5, 11, 1, 108318), 500.0, "URSoftware 5.11.1.108318 (Mar 22 2021)")


class Controller:
    """All mutable controller state; every method takes the one lock."""

    def __init__(self, series: Series, q0: np.ndarray):
        self.series = series
        self.lock = threading.RLock()
        self.t0 = time.monotonic()
        self.q = np.array(q0, dtype=float)
        self.qd = np.zeros(6)
        self.target_q = self.q.copy()
        self.int_regs: dict[int, int] = {}
        self.double_regs: dict[int, float] = {}
        self.runtime_state = RUNTIME_STOPPED
        self.safety_mode = SAFETY_NORMAL
        self.script_state = 0  # output_int_register_0 as the control script writes it
        self.executing_cmd = False
        self.mode = "idle"  # idle | servo | speed | move | stopping
        self.move_speed = 1.0
        self.decel = 1.0
        self.speed_cmd = np.zeros(6)
        self.lookahead = 0.1
        self.accel = 1.0
        self.watchdog_period: float | None = None
        self.last_cmd_update = time.monotonic()
        self.log: list[dict] = []

    # -- inputs from the wire ---------------------------------------------------------------
    def record(self, source: str, name: str, kind: str, **args: object) -> None:
        with self.lock:
            self.log.append({"t": time.monotonic(), "source": source, "name": name, "kind": kind, "args": args})

    def apply_inputs(self, values: dict[str, object], session: int = 0) -> None:
        """A data package from a client: update registers, log the command it carries."""
        with self.lock:
            for name, value in values.items():
                if name.startswith("input_int_register_"):
                    self.int_regs[int(name.rsplit("_", 1)[1])] = int(value)  # type: ignore[arg-type]
                elif name.startswith("input_double_register_"):
                    self.double_regs[int(name.rsplit("_", 1)[1])] = float(value)  # type: ignore[arg-type]
            if "input_int_register_0" not in values:
                return
            self.last_cmd_update = time.monotonic()
            cmd = int(values["input_int_register_0"])  # type: ignore[arg-type]
            if cmd == 0:
                return
            kind = "motion" if cmd in MOTION_COMMANDS else "stop" if cmd in STOP_COMMANDS else "other"
            d = [self.double_regs.get(i, 0.0) for i in range(12)]
            args: dict[str, object] = {"cmd": cmd}
            if cmd == 11:
                args.update(q=d[0:6], speed=d[6], acceleration=d[7], time=d[8], lookahead_time=d[9], gain=d[10])
            elif cmd in (16, 15, 35):
                args.update(value=d[0])
            elif cmd in (33, 34):
                args.update(deceleration=d[0], asynchronous=self.int_regs.get(1, 0))
            elif cmd == 1:
                args.update(q=d[0:6], speed=d[6], acceleration=d[7])
            elif cmd == 9:
                args.update(qd=d[0:6], acceleration=d[6], time=d[7])
            self.log.append({"t": time.monotonic(), "source": "rtde", "name": COMMAND_NAMES.get(cmd, f"cmd{cmd}"),
                             "kind": kind, "args": args, "session": session})

    def program_uploaded(self, text: str) -> None:
        """The script port received a whole program: a ur_rtde control script starts running."""
        with self.lock:
            if "def rtde_control():" in text:
                self.runtime_state = RUNTIME_PLAYING
                self.script_state = 1
                self.executing_cmd = False
            self.log.append({"t": time.monotonic(), "source": "script", "name": "script_upload", "kind": "other",
                             "args": {"bytes": len(text), "rtde_control": "def rtde_control():" in text}})

    def stop_program(self, reason: str) -> None:
        with self.lock:
            self.runtime_state = RUNTIME_STOPPED
            self.watchdog_period = None
            self._halt()
            self.log.append({"t": time.monotonic(), "source": "controller", "name": "program_stopped",
                             "kind": "stop", "args": {"reason": reason}})

    def protective_stop(self) -> None:
        with self.lock:
            self.safety_mode = SAFETY_PROTECTIVE_STOP
            self._halt()

    def _halt(self) -> None:
        self.mode = "idle"
        self.qd = np.zeros(6)
        self.target_q = self.q.copy()

    # -- one controller cycle ---------------------------------------------------------------
    def tick(self, dt: float) -> None:
        with self.lock:
            if self.runtime_state == RUNTIME_PLAYING:
                self._run_script_cycle()
                if self.watchdog_period and time.monotonic() - self.last_cmd_update > self.watchdog_period:
                    self.stop_program("rtde watchdog: input_int_register_0 not updated in time")
            self._integrate(dt)

    def _run_script_cycle(self) -> None:
        cmd = self.int_regs.get(0, 0)
        if cmd in REALTIME_COMMANDS:
            self._process(cmd)
            self.script_state = 1
        elif cmd == 0:
            self.executing_cmd = False
            self.script_state = 1
        elif not self.executing_cmd:
            self.executing_cmd = True
            if self._process(cmd):
                self.script_state = 2

    def _process(self, cmd: int) -> bool:
        """Act on one command; False when it is not done yet (moveJ) or ended the script."""
        d = [self.double_regs.get(i, 0.0) for i in range(12)]
        if self.safety_mode != SAFETY_NORMAL and cmd in MOTION_COMMANDS:
            return True  # a protective stop holds the arm whatever the script asks
        if cmd == 11:
            self.mode, self.target_q, self.lookahead = "servo", np.array(d[0:6]), max(d[9], 1e-3)
        elif cmd == 9:
            self.mode, self.speed_cmd, self.accel = "speed", np.array(d[0:6]), max(d[6], 1e-3)
        elif cmd == 1:
            self.mode, self.target_q, self.move_speed = "move", np.array(d[0:6]), max(d[6], 1e-3)
            return False
        elif cmd in (15, 16, 33, 34):
            self.mode, self.decel = "stopping", max(d[0], 1e-3)
        elif cmd == 31:
            self.protective_stop()
        elif cmd == 35:
            self.watchdog_period = 1.0 / d[0] if d[0] > 0 else None
        elif cmd == 255:
            self.stop_program("stopScript command")
            return False
        return True

    def _integrate(self, dt: float) -> None:
        q_old = self.q.copy()
        if self.mode == "servo":
            step = (self.target_q - self.q) * min(1.0, dt / self.lookahead)
            self.q = self.q + np.clip(step, -MAX_JOINT_SPEED * dt, MAX_JOINT_SPEED * dt)
        elif self.mode == "speed":
            self.qd = self.qd + np.clip(self.speed_cmd - self.qd, -self.accel * dt, self.accel * dt)
            self.q = self.q + self.qd * dt
        elif self.mode == "move":
            self.q = self.q + np.clip(self.target_q - self.q, -self.move_speed * dt, self.move_speed * dt)
            if np.allclose(self.q, self.target_q, atol=1e-9):
                self.mode, self.script_state = "idle", 2
        elif self.mode == "stopping":
            self.qd = self.qd - np.clip(self.qd, -self.decel * dt, self.decel * dt)
            self.q = self.q + self.qd * dt
            if not self.qd.any():
                self.mode = "idle"
        if self.mode != "speed" and self.mode != "stopping":
            self.qd = (self.q - q_old) / dt
        if self.mode not in ("servo", "move"):
            self.target_q = self.q.copy()

    # -- what the controller publishes ------------------------------------------------------
    def outputs(self) -> dict[str, object]:
        with self.lock:
            playing = self.runtime_state == RUNTIME_PLAYING
            protective = self.safety_mode == SAFETY_PROTECTIVE_STOP
            safety_bits = (1 << 2) | (1 << 10) if protective else 1 << 0
            return {
                "timestamp": time.monotonic() - self.t0,
                "target_q": list(self.target_q),
                "actual_q": list(self.q),
                "actual_qd": list(self.qd),
                "target_qd": list(self.qd),
                "actual_TCP_pose": ur3_tcp_pose(self.q),
                "target_TCP_pose": ur3_tcp_pose(self.target_q),
                "robot_mode": ROBOT_MODE_RUNNING,
                "safety_mode": self.safety_mode,
                "safety_status": self.safety_mode,
                "joint_mode": [253] * 6,
                "runtime_state": self.runtime_state,
                "robot_status_bits": 1 | (2 if playing else 0),
                "safety_status_bits": safety_bits,
                "output_int_register_0": self.script_state,
                "speed_scaling": 1.0,
                "target_speed_fraction": 1.0,
                "joint_temperatures": [30.0] * 6,
                "actual_main_voltage": 48.0,
                "actual_robot_voltage": 48.0,
            }

    def snapshot(self) -> dict[str, object]:
        with self.lock:
            return {
                "q": list(self.q), "qd": list(self.qd), "mode": self.mode, "runtime_state": self.runtime_state,
                "safety_mode": self.safety_mode, "script_state": self.script_state,
                "watchdog_period": self.watchdog_period, "rate_hz": self.series.rate_hz,
            }
