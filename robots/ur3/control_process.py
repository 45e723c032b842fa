"""Parent side of the control worker (`control_worker.py`): every ur_rtde control call crosses
a pipe with a deadline, and a lost or hung session ends with SIGKILL instead of a reconnect."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

WORKER = Path(__file__).resolve().with_name("control_worker.py")


class ControlWorkerError(RuntimeError):
    """The control worker failed, timed out or is gone; the motion port treats it as link loss."""


class ControlProcess:
    """Proxy with the subset of RTDEControlInterface the motion port uses."""

    def __init__(self, host: str, frequency_hz: float, stop_deceleration: float, start_timeout_s: float):
        self._proc: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, str(WORKER), host, repr(float(frequency_hz)), repr(float(stop_deceleration))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._buffer = b""
        first = self._read(start_timeout_s)
        if "error" in first:
            self.kill()
            raise ControlWorkerError(first["error"])

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _read(self, timeout_s: float) -> dict:
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise ControlWorkerError("control worker is not running")
        deadline = time.monotonic() + timeout_s
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(remaining, 0.0))
            if not ready:
                self.kill()
                raise ControlWorkerError(f"control worker did not answer within {timeout_s:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.kill()
                raise ControlWorkerError(f"control worker exited (code {proc.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _call(self, op: str, *args: object, timeout_s: float = 1.0, **extra: object) -> object:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            raise ControlWorkerError("control worker is not running")
        try:
            proc.stdin.write(json.dumps({"op": op, "args": list(args), **extra}).encode() + b"\n")
        except OSError as exc:
            self.kill()
            raise ControlWorkerError(f"control worker pipe closed: {exc}") from None
        reply = self._read(timeout_s)
        if "error" in reply:
            raise ControlWorkerError(reply["error"])
        return reply["ok"]

    # -- the RTDEControlInterface subset ---------------------------------------------------
    def isConnected(self) -> bool:  # noqa: N802 - mirrors ur_rtde's name on purpose
        return bool(self._call("isConnected"))

    def servoJ(  # noqa: N802
        self, q: list[float], speed: float, acceleration: float, t: float, lookahead: float, gain: float
    ) -> bool:
        return bool(self._call("servoJ", q, speed, acceleration, t, lookahead, gain, timeout_s=1.0))

    def servoStop(self, deceleration: float) -> bool:  # noqa: N802
        return bool(self._call("servoStop", deceleration, timeout_s=5.0))

    def stopJ(self, deceleration: float, asynchronous: bool = False) -> bool:  # noqa: N802
        return bool(self._call("stopJ", deceleration, asynchronous, timeout_s=5.0))

    def triggerProtectiveStop(self) -> bool:  # noqa: N802
        return bool(self._call("triggerProtectiveStop", timeout_s=5.0))

    def setWatchdog(self, min_frequency_hz: float) -> bool:  # noqa: N802
        return bool(self._call("setWatchdog", min_frequency_hz, timeout_s=5.0))

    # -- lifetime ----------------------------------------------------------------------------
    def close(self, deceleration: float) -> None:
        """servoStop, stopJ, stopScript in the worker, then let it exit (SIGKILL if it hangs)."""
        if not self.alive:
            self.kill()
            return
        try:
            self._call("close", decel=deceleration, timeout_s=10.0)
        finally:
            proc = self._proc
            if proc is not None:
                try:
                    proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    pass
            self.kill()

    def kill(self) -> None:
        """End the session now: the kernel closes its sockets and nothing reconnects."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
