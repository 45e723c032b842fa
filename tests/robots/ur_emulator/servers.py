"""The three loopback TCP services a UR controller offers to ur_rtde.

- RTDE (30004): protocol negotiation, controller version, output/input recipe setup, start/pause,
  data packages in both directions; outputs are pushed from the controller clock.
- Dashboard (29999): line-oriented text commands with the replies UR documents.
- Script (30003, secondary interface): receives URScript programs; a `def rtde_control():`
  program starts the emulated control script.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from . import protocol as p
from .controller import RUNTIME_PLAYING, SAFETY_PROTECTIVE_STOP, Controller

class Listener:
    """Accept loop on one loopback address:port; `close_all` drops sessions, `close` stops accepting."""

    def __init__(self, host: str, port: int, handler, name: str):
        self.host, self.port, self.handler, self.name = host, port, handler, name
        self.sessions: set[socket.socket] = set()
        self.accepted = 0
        self.lock = threading.Lock()
        self.server: socket.socket | None = None

    def open(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.host, self.port))
        server.listen(8)
        self.server = server
        threading.Thread(target=self._accept_loop, args=(server,), daemon=True, name=f"{self.name}-accept").start()

    def close(self) -> None:
        """Stop listening (connection attempts are refused) without touching open sessions."""
        server, self.server = self.server, None
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()

    def close_all(self, only: set[socket.socket] | None = None) -> None:
        with self.lock:
            sessions = [s for s in self.sessions if only is None or s in only]
            self.sessions -= set(sessions)
        for sock in sessions:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept_loop(self, server: socket.socket) -> None:
        while True:
            try:
                sock, _ = server.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.sessions.add(sock)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True, name=f"{self.name}-session").start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self.handler(sock)
        except OSError:
            pass
        finally:
            with self.lock:
                self.sessions.discard(sock)
            sock.close()


class RTDEServer:
    """RTDE sessions; input registers are claimed per session as on a real controller (IN_USE)."""

    def __init__(self, controller: Controller, host: str, port: int):
        self.controller = controller
        self.listener = Listener(host, port, self._session, "rtde")
        self.started: list[_RTDESession] = []
        self.claims: dict[str, _RTDESession] = {}
        self.output_frequencies: list[float] = []  # what each output setup asked for, in order
        self.sessions_opened = 0
        self.lock = threading.Lock()

    def _session(self, sock: socket.socket) -> None:
        with self.lock:
            self.sessions_opened += 1
            session = _RTDESession(sock, self.sessions_opened)
        try:
            while (msg := p.read_message(sock)) is not None:
                self._handle(session, *msg)
        finally:
            with self.lock:
                if session in self.started:
                    self.started.remove(session)
                for name in [n for n, s in self.claims.items() if s is session]:
                    del self.claims[name]

    def _handle(self, s: "_RTDESession", msg_type: int, payload: bytes) -> None:
        series = self.controller.series
        if msg_type == p.REQUEST_PROTOCOL_VERSION:
            s.send(p.encode(msg_type, struct.pack(">B", struct.unpack(">H", payload)[0] in (1, 2))))
        elif msg_type == p.GET_URCONTROL_VERSION:
            s.send(p.encode(msg_type, struct.pack(">IIII", *series.version)))
        elif msg_type == p.SETUP_OUTPUTS:
            frequency = struct.unpack(">d", payload[:8])[0]
            self.output_frequencies.append(frequency)
            names = [n for n in payload[8:].decode().split(",") if n]
            types = [p.OUTPUT_TYPES.get(n, "NOT_FOUND") for n in names]
            if "NOT_FOUND" not in types:
                s.output_names, s.output_types = names, types
                s.output_struct = p.recipe_struct(types)
                s.divisor = max(1, round(series.rate_hz / frequency)) if frequency > 0 else 1
            s.send(p.encode(msg_type, struct.pack(">B", 1) + ",".join(types).encode()))
        elif msg_type == p.SETUP_INPUTS:
            names = [n for n in payload.decode().split(",") if n]
            self.controller.record("rtde", "setup_inputs", "other", names=names)
            with self.lock:
                types = [
                    "IN_USE" if self.claims.get(n, s) is not s else p.INPUT_TYPES.get(n, "NOT_FOUND") for n in names
                ]
                ok = all(t in p.TYPE_FORMATS for t in types)
                if ok:
                    for n in names:
                        self.claims[n] = s
            recipe_id = len(s.input_recipes) + 1 if ok else 0
            if ok:
                s.input_recipes[recipe_id] = (names, types, p.recipe_struct(types))
            s.send(p.encode(msg_type, struct.pack(">B", recipe_id) + ",".join(types).encode()))
        elif msg_type == p.START:
            with self.lock:
                if s not in self.started:
                    self.started.append(s)
            s.send(p.encode(msg_type, struct.pack(">B", 1)))
        elif msg_type == p.PAUSE:
            with self.lock:
                if s in self.started:
                    self.started.remove(s)
            s.send(p.encode(msg_type, struct.pack(">B", 1)))
        elif msg_type == p.DATA_PACKAGE:
            recipe = s.input_recipes.get(payload[0])
            if recipe is None:
                return
            names, types, layout = recipe
            values = p.regroup(types, layout.unpack(payload[1 : 1 + layout.size]))
            self.controller.apply_inputs(dict(zip(names, values)), s.number)

    def control_sockets(self) -> set[socket.socket]:
        """Sessions that set up input recipes (ur_rtde's control interface), not read-only ones."""
        with self.lock:
            return {s.sock for s in set(self.claims.values())}

    def publish(self, tick: int) -> None:
        """Push one output data package to every started session due at this tick."""
        with self.lock:
            sessions = list(self.started)
        if not sessions:
            return
        outputs = self.controller.outputs()
        for s in sessions:
            if s.output_struct is None or tick % s.divisor:
                continue
            values = [outputs.get(n, _zero(t)) for n, t in zip(s.output_names, s.output_types)]
            body = struct.pack(">B", 1) + s.output_struct.pack(*p.flatten(s.output_types, values))
            try:
                s.send(p.encode(p.DATA_PACKAGE, body))
            except OSError:
                pass


def _zero(rtde_type: str) -> object:
    return {"VECTOR3D": [0.0] * 3, "VECTOR6D": [0.0] * 6, "VECTOR6INT32": [0] * 6, "VECTOR6UINT32": [0] * 6,
            "DOUBLE": 0.0}.get(rtde_type, 0)


class _RTDESession:
    def __init__(self, sock: socket.socket, number: int):
        self.sock = sock
        self.number = number  # 1, 2, ... in accept order; commands in the log carry it
        self.send_lock = threading.Lock()
        self.output_names: list[str] = []
        self.output_types: list[str] = []
        self.output_struct: struct.Struct | None = None
        self.divisor = 1
        self.input_recipes: dict[int, tuple[list[str], list[str], struct.Struct]] = {}

    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)


class DashboardServer:
    def __init__(self, controller: Controller, host: str, port: int):
        self.controller = controller
        self.listener = Listener(host, port, self._session, "dashboard")

    def _session(self, sock: socket.socket) -> None:
        sock.sendall(b"Connected: Universal Robots Dashboard Server\n")
        buffer = b""
        while True:
            data = sock.recv(4096)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = line.decode(errors="replace").strip()
                reply = self._reply(command)
                self.controller.record("dashboard", command, "stop" if command == "stop" else "other")
                sock.sendall(reply.encode() + b"\n")

    def _reply(self, command: str) -> str:
        c = self.controller
        snap = c.snapshot()
        playing = snap["runtime_state"] == RUNTIME_PLAYING
        if command == "PolyscopeVersion":
            return c.series.polyscope
        if command == "robotmode":
            return "Robotmode: RUNNING"
        if command == "safetystatus":
            return "Safetystatus: " + ("PROTECTIVE_STOP" if snap["safety_mode"] == SAFETY_PROTECTIVE_STOP else "NORMAL")
        if command == "safetymode":
            return "Safetymode: " + ("PROTECTIVE_STOP" if snap["safety_mode"] == SAFETY_PROTECTIVE_STOP else "NORMAL")
        if command == "is in remote control":
            return "true"
        if command == "running":
            return f"Program running: {'true' if playing else 'false'}"
        if command == "programState":
            return ("PLAYING" if playing else "STOPPED") + " rtde_control"
        if command == "get serial number":
            return "20185500001"
        if command == "get robot model":
            return "UR3"
        if command == "stop":
            # ur_rtde sends this right after stopScript has ended the program and requires
            # "Stopped" back, so (as URSim does) it is answered whether or not a program runs.
            if playing:
                c.stop_program("dashboard stop")
            return "Stopped"
        if command == "quit":
            return "Disconnected"
        return f"could not understand: '{command}'"


class ScriptServer:
    """Collects URScript text; a top-level `def ...:` ... `end` block is one program."""

    def __init__(self, controller: Controller, host: str, port: int):
        self.controller = controller
        self.listener = Listener(host, port, self._session, "script")

    def _session(self, sock: socket.socket) -> None:
        text = ""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            text += data.decode(errors="replace")
            while (program := _complete_program(text)) is not None:
                self.controller.program_uploaded(program)
                text = text[len(program) :]


def _complete_program(text: str) -> str | None:
    if not text.startswith("def "):
        line, sep, _ = text.partition("\n")
        return line + sep if sep else None  # a single primary-interface script line
    offset = 0
    for line in text.splitlines(keepends=True):
        offset += len(line)
        if line.rstrip("\r\n") == "end" and line.endswith("\n"):
            return text[:offset]
    return None


def run_clock(controller: Controller, rtde: RTDEServer, stop: threading.Event) -> None:
    """The controller cycle: run the script, integrate, publish, at the series' rate."""
    period = 1.0 / controller.series.rate_hz
    next_t = time.monotonic()
    tick = 0
    while not stop.is_set():
        controller.tick(period)
        rtde.publish(tick)
        tick += 1
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.monotonic()  # fell behind (loaded CI machine): keep the rate, skip catch-up
