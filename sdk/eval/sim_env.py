"""The simulator as the harness sees it: tasks, reset to a task instance, step, close.

`SimEnvironment` is the interface the episode loop needs; `LiberoProcess` implements it by
driving sim_worker.py in the simulator's own Python (sim_setup.py says why). Tests may pass
any other implementation (tests/eval use a labelled fake for the harness logic and the real
LIBERO process when it is installed).
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..serve import wire
from .framing import FrameError, read_frame, write_frame
from .sim_setup import SimulatorUnavailableError, missing_message, simulator_python


@dataclass(frozen=True)
class TaskInfo:
    id: int
    name: str
    language: str  # the prompt
    init_states: int  # fixed initial states the suite ships for this task


@dataclass
class StepResult:
    raw: dict[str, np.ndarray]
    done: bool  # LIBERO: the task's goal holds (success)


class SimEnvironment(Protocol):
    def tasks(self, suite: str) -> list[TaskInfo]: ...

    def reset(self, suite: str, task: int, init_index: int, seed: int, resolution: int) -> dict[str, np.ndarray]: ...

    def step(self, action: np.ndarray) -> StepResult: ...

    def close(self) -> None: ...


class SimulatorError(SimulatorUnavailableError):
    """The simulator process failed or answered with an error."""


class LiberoProcess:
    """sim_worker.py in a child process; one request at a time."""

    def __init__(self, python: str | Path | None = None, gl: str | None = None):
        exe = simulator_python(python)
        worker = Path(__file__).with_name("sim_worker.py")
        env = dict(os.environ)
        env.setdefault("MUJOCO_GL", gl or "egl")
        env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"] if env["MUJOCO_GL"] in ("egl", "osmesa") else "")
        self._stderr_tail: list[str] = []
        self._proc = subprocess.Popen([str(exe), str(worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=env)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        hello = self._receive()
        if "error" in hello:
            self.close()
            raise SimulatorUnavailableError(missing_message(f"{exe}: {hello['error']}"))

    def _drain(self) -> None:
        for line in self._proc.stderr:  # keep the simulator's chatter out of the way, but keep a tail
            self._stderr_tail = (self._stderr_tail + [line.decode(errors="replace").rstrip()])[-20:]

    def _receive(self) -> dict:
        try:
            return read_frame(self._proc.stdout, wire.unpackb)
        except (FrameError, wire.WireError) as exc:
            tail = "\n".join(self._stderr_tail[-8:])
            raise SimulatorError(f"the LIBERO simulator process stopped ({exc}); its last output:\n{tail}") from exc

    def _call(self, request: dict):
        try:
            write_frame(self._proc.stdin, request, wire.packb)
        except (BrokenPipeError, OSError) as exc:
            raise SimulatorError(f"the LIBERO simulator process is gone ({exc})") from exc
        reply = self._receive()
        if "error" in reply:
            raise SimulatorError(f"LIBERO: {reply['error']}")
        return reply["ok"]

    def tasks(self, suite: str) -> list[TaskInfo]:
        return [TaskInfo(int(t["id"]), str(t["name"]), str(t["language"]), int(t["init_states"]))
                for t in self._call({"op": "tasks", "suite": suite})]

    def reset(self, suite: str, task: int, init_index: int, seed: int, resolution: int) -> dict[str, np.ndarray]:
        return self._call({"op": "reset", "suite": suite, "task": task, "init_index": init_index, "seed": seed,
                           "resolution": resolution})

    def step(self, action: np.ndarray) -> StepResult:
        out = self._call({"op": "step", "action": np.asarray(action, dtype=np.float64)})
        return StepResult(out["obs"], bool(out["done"]))

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._call({"op": "close"})
            except SimulatorError:
                pass
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> "LiberoProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
