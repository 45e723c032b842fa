"""A UR controller emulator on loopback for testing the real `ur_rtde` client.

`EmulatorHandle` starts the emulator in a child process (the fixed UR ports 30004/29999/30003,
as ur_rtde hard-codes them, on a free loopback address) and gives tests its command log and
fault injection.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

UR_PORTS = (30004, 29999, 30003)


class EmulatorHandle:
    """Lifetime of one emulator process; use as a context manager so it always ends.

    ur_rtde hard-codes the ports, so concurrent test runs are kept apart by address instead:
    each emulator takes its own free loopback address 127.0.0.N (`host`)."""

    def __init__(self, series: str = "cb3", q0: list[float] | None = None, start_timeout_s: float = 10.0):
        self.host = free_loopback_host()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "ur_emulator", "--host", self.host, "--series", series]
        if q0 is not None:
            cmd += ["--q0", *map(str, q0)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY "):
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"UR emulator did not start on {self.host}: {line!r} {err}")
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


def free_loopback_host() -> str:
    """A loopback address on which none of the UR ports is in use (nothing listens there), so a
    test can also use it as an "unreachable controller"."""
    rng = random.Random()
    for _ in range(200):
        host = f"127.0.{rng.randrange(1, 255)}.{rng.randrange(2, 255)}"
        if all(_bindable(host, port) for port in UR_PORTS):
            return host
    raise RuntimeError("no free loopback address for the UR emulator")


def _bindable(host: str, port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        probe.close()
