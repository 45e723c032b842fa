"""A UR controller emulator on loopback for testing the real `ur_rtde` client.

`EmulatorHandle` starts the emulator in a child process (fixed UR ports 30004/29999/30003 on
127.0.0.1, as ur_rtde hard-codes them) and gives tests its command log and fault injection.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

UR_PORTS = (30004, 29999, 30003)


class EmulatorHandle:
    """Lifetime of one emulator process; use as a context manager so it always ends."""

    def __init__(self, series: str = "cb3", q0: list[float] | None = None, start_timeout_s: float = 10.0):
        _wait_ports_free(UR_PORTS, timeout_s=5.0)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "ur_emulator", "--series", series]
        if q0 is not None:
            cmd += ["--q0", *map(str, q0)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY "):
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"UR emulator did not start: {line!r} {err}")
        self._sock = socket.create_connection(("127.0.0.1", int(line.split()[1])), timeout=start_timeout_s)
        self._reader = self._sock.makefile("r")

    def _call(self, op: str, **kw: object) -> object:
        self._sock.sendall(json.dumps({"op": op, **kw}).encode() + b"\n")
        return json.loads(self._reader.readline())

    def log(self) -> list[dict]:
        return self._call("log")  # type: ignore[return-value]

    def commands(self, kind: str | None = None, name: str | None = None) -> list[dict]:
        """Commands received on the wire, optionally filtered by kind (motion/stop/other) or name."""
        return [e for e in self.log() if (kind is None or e["kind"] == kind) and (name is None or e["name"] == name)]

    def state(self) -> dict:
        return self._call("state")  # type: ignore[return-value]

    def drop_connections(self, only_control: bool = False) -> None:
        """Close every session (controller reboot / cable), or only the RTDE session that owns the
        input registers (the control interface's), leaving read-only streams up."""
        self._call("drop", only="control" if only_control else "all")

    def set_listening(self, on: bool) -> None:
        self._call("listen", on=on)

    def protective_stop(self) -> None:
        self._call("protective_stop")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call("shutdown")
            except (OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sock.close()

    def __enter__(self) -> "EmulatorHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait_ports_free(ports: tuple[int, ...], timeout_s: float) -> None:
    """A previous emulator may still be exiting; refuse to start two on the same ports."""
    deadline = time.monotonic() + timeout_s
    for port in ports:
        while True:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"port {port} on 127.0.0.1 is busy; another UR emulator still running?")
                time.sleep(0.1)
            finally:
                probe.close()
