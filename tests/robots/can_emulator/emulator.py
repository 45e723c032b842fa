"""Emulated ARX5 motors (EC-A4310 and DM-J43xx) answering on a python-can virtual bus.

It decodes frames byte by byte from the vendor layout (deliberately NOT via
vla_edge.robots.arx5.protocol, so a layout bug in the driver's codec shows up as a mismatch),
integrates a first-order motor model, and replies exactly when the real motors do:
- EC: replies to every MIT frame on its own id with an "ack 1" feedback frame.
- DM: replies on master id (motor id + 0x10) to MIT, enable/disable and 0x7FF status requests;
  only an enabled DM motor applies MIT commands.
Every frame that can produce torque (any MIT frame, applied or not) is recorded in `motion_frames`.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import can

EC, DM = "ec", "dm"
# (lo, hi, bits) per field, straight from the vendor SDK constants.
_EC = {"kp": (0.0, 500.0, 12), "kd": (0.0, 50.0, 9), "pos": (-12.5, 12.5, 16), "vel": (-18.0, 18.0, 12),
       "tor": (-30.0, 30.0, 12), "cur": (-30.0, 30.0, 12)}
_DM = {"pos": (-12.5, 12.5, 16), "vel": (-45.0, 45.0, 12), "kp": (0.0, 500.0, 12), "kd": (0.0, 5.0, 12),
       "tor": (-18.0, 18.0, 12)}


def _u2f(u: int, spec: tuple[float, float, int]) -> float:
    lo, hi, bits = spec
    return u * (hi - lo) / ((1 << bits) - 1) + lo


def _f2u(x: float, spec: tuple[float, float, int]) -> int:
    lo, hi, bits = spec
    x = min(max(x, lo), hi)
    return int((x - lo) * ((1 << bits) - 1) / (hi - lo))


@dataclass
class RecordedFrame:
    t: float
    motor_id: int
    kind: str
    applied: bool
    pos: float
    vel: float
    kp: float
    kd: float
    tor: float


@dataclass
class EmulatedMotor:
    motor_id: int
    kind: str
    q: float = 0.0
    v: float = 0.0
    enabled: bool = False  # DM only; EC motors act on every MIT frame
    fault: int = 0  # DM: state code >= 8 (e.g. 8 over-voltage); EC: error bits; 0 = healthy
    damping: float = 0.5  # N m s/rad of the gearbox, keeps the first-order model well posed
    cmd: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)  # pos, vel, kp, kd, tor
    last_t: float = field(default_factory=time.monotonic)

    def integrate(self, now: float) -> None:
        """First-order model: (kd + b) dq/dt = kp (p - q) + kd v_ref + tau, in 1 ms sub-steps."""
        dt_total = min(now - self.last_t, 0.2)
        self.last_t = now
        pos, vel, kp, kd, tor = self.cmd
        if self.kind == DM and not self.enabled:
            kp = kd = tor = 0.0
        steps = max(1, int(math.ceil(dt_total / 0.001)))
        dt = dt_total / steps
        for _ in range(steps):
            self.v = (kp * (pos - self.q) + kd * vel + tor) / (kd + self.damping)
            self.q += self.v * dt


class MotorBusEmulator:
    """All motors of one arm on one virtual channel. Use as a context manager."""

    def __init__(self, channel: str, motors: list[tuple[int, str]], initial_q: dict[int, float] | None = None):
        self.channel = channel
        self.motors = {mid: EmulatedMotor(mid, kind, q=(initial_q or {}).get(mid, 0.0)) for mid, kind in motors}
        self.motion_frames: list[RecordedFrame] = []
        self.all_frames: list[can.Message] = []
        self.lock = threading.Lock()
        self._bus = can.Bus(interface="virtual", channel=channel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "MotorBusEmulator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._bus.shutdown()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._bus.recv(timeout=0.02)
            if msg is not None:
                with self.lock:
                    self.all_frames.append(msg)
                    self._handle(msg)

    def _handle(self, msg: can.Message) -> None:
        d, cid, now = bytes(msg.data), msg.arbitration_id, time.monotonic()
        if cid == 0x7FF and len(d) >= 3 and d[2] == 0xCC:
            m = self.motors.get(d[0] | (d[1] << 8))
            if m is not None and m.kind == DM:
                m.integrate(now)
                self._reply(m)
            return
        m = self.motors.get(cid)
        if m is None or len(d) != 8:
            return
        m.integrate(now)
        if m.kind == DM and d[:7] == b"\xff" * 7:
            if d[7] == 0xFC and not m.fault:
                m.enabled = True
            elif d[7] == 0xFD:
                m.enabled = False
            self._reply(m)
            return
        if m.kind == EC:
            kp_u = ((d[0] & 0x1F) << 7) | (d[1] >> 1)
            kd_u = ((d[1] & 0x01) << 8) | d[2]
            pos_u, vel_u = (d[3] << 8) | d[4], (d[5] << 4) | (d[6] >> 4)
            tor_u = ((d[6] & 0x0F) << 8) | d[7]
            f = _EC
        else:
            pos_u, vel_u = (d[0] << 8) | d[1], (d[2] << 4) | (d[3] >> 4)
            kp_u, kd_u = ((d[3] & 0x0F) << 8) | d[4], (d[5] << 4) | (d[6] >> 4)
            tor_u = ((d[6] & 0x0F) << 8) | d[7]
            f = _DM
        cmd = (_u2f(pos_u, f["pos"]), _u2f(vel_u, f["vel"]), _u2f(kp_u, f["kp"]), _u2f(kd_u, f["kd"]), _u2f(tor_u, f["tor"]))
        applied = m.kind == EC or m.enabled
        self.motion_frames.append(RecordedFrame(now, m.motor_id, m.kind, applied, *cmd))
        if applied:
            m.cmd = cmd
        self._reply(m)

    def _reply(self, m: EmulatedMotor) -> None:
        if m.kind == EC:
            p, v, c = _f2u(m.q, _EC["pos"]), _f2u(m.v, _EC["vel"]), _f2u(0.0, _EC["cur"])
            data = [0x20 | (m.fault & 0x1F), p >> 8, p & 0xFF, v >> 4, ((v & 0xF) << 4) | (c >> 8), c & 0xFF, 2 * 35 + 50, 0]
            out = can.Message(arbitration_id=m.motor_id, data=data, is_extended_id=False)
        else:
            p, v, t = _f2u(m.q, _DM["pos"]), _f2u(m.v, _DM["vel"]), _f2u(0.0, _DM["tor"])
            state = m.fault if m.fault else (1 if m.enabled else 0)
            data = [(state << 4) | (m.motor_id & 0xF), p >> 8, p & 0xFF, v >> 4,
                    ((v & 0xF) << 4) | (t >> 8), t & 0xFF, 40, 35]
            out = can.Message(arbitration_id=m.motor_id + 0x10, data=data, is_extended_id=False)
        self._bus.send(out)

    def settle(self, quiet_s: float = 0.03, timeout_s: float = 2.0) -> None:
        """Wait until no frame has arrived for `quiet_s`: everything sent so far has been handled."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                seen = len(self.all_frames)
            time.sleep(quiet_s)
            with self.lock:
                if len(self.all_frames) == seen:
                    return

    def positions(self) -> dict[int, float]:
        with self.lock:
            now = time.monotonic()
            for m in self.motors.values():
                m.integrate(now)
            return {mid: m.q for mid, m in self.motors.items()}
