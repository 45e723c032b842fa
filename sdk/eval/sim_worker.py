"""The LIBERO simulator, run as a child process in its own Python environment.

Why a separate process and environment: LIBERO needs robosuite 1.4 and MuJoCo < 4, vla-edge's
robot simulators pin MuJoCo 4.0.0, and one environment cannot hold both (see sim_setup.py).
This file therefore imports nothing from vla_edge: it loads `framing.py` and `serve/wire.py` by
path and speaks length-prefixed msgpack frames on its stdin/stdout. Everything LIBERO prints goes
to stderr (stdout is the frame channel).

Requests (a map with "op"): tasks {suite}; reset {suite, task, init_index, seed, resolution};
step {action}; close. Replies: {"ok": ...} or {"error": text}.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path

RAW_KEYS = ("agentview_image", "robot0_eye_in_hand_image", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Libero:
    """One suite's benchmark object and one environment, rebuilt when the task changes (as openpi does)."""

    def __init__(self):
        os.environ.setdefault("MUJOCO_GL", "egl")
        from libero.libero import benchmark  # noqa: PLC0415

        self._benchmarks = benchmark.get_benchmark_dict()
        self._suites: dict = {}
        self._env = None
        self._env_key = None

    def suite(self, name: str):
        if name not in self._suites:
            if name not in self._benchmarks:
                raise KeyError(f"unknown LIBERO suite {name!r}")
            self._suites[name] = self._benchmarks[name]()
        return self._suites[name]

    def tasks(self, suite_name: str) -> list[dict]:
        suite = self.suite(suite_name)
        return [{"id": i, "name": suite.get_task(i).name, "language": suite.get_task(i).language,
                 "init_states": int(len(suite.get_task_init_states(i)))} for i in range(suite.n_tasks)]

    def reset(self, suite_name: str, task: int, init_index: int, seed: int, resolution: int) -> dict:
        from libero.libero import get_libero_path  # noqa: PLC0415
        from libero.libero.envs import OffScreenRenderEnv  # noqa: PLC0415

        suite = self.suite(suite_name)
        key = (suite_name, task, resolution)
        if self._env_key != key:
            self.close()
            info = suite.get_task(task)
            bddl = os.path.join(get_libero_path("bddl_files"), info.problem_folder, info.bddl_file)
            self._env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=resolution, camera_widths=resolution)
            self._env_key = key
        init_states = suite.get_task_init_states(task)
        self._env.seed(seed)
        self._env.reset()
        obs = self._env.set_init_state(init_states[init_index % len(init_states)])
        return _raw(obs)

    def step(self, action) -> dict:
        if self._env is None:
            raise RuntimeError("step before reset")
        obs, reward, done, _ = self._env.step(list(map(float, action)))
        return {"obs": _raw(obs), "done": bool(done), "reward": float(reward)}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._env_key = None, None


def _raw(obs: dict) -> dict:
    return {key: obs[key] for key in RAW_KEYS}


def main() -> int:
    here = Path(__file__).resolve().parent
    framing = _load("vla_edge_framing", here / "framing.py")
    wire = _load("vla_edge_wire", here.parent / "serve" / "wire.py")
    channel = os.fdopen(os.dup(1), "wb")
    requests = os.fdopen(os.dup(0), "rb")
    os.dup2(2, 1)  # anything the simulator prints lands on stderr, never in the frame channel
    sys.stdout = sys.stderr
    try:
        sim = Libero()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the fix
        framing.write_frame(channel, {"error": f"cannot import LIBERO: {type(exc).__name__}: {exc}"}, wire.packb)
        return 1
    framing.write_frame(channel, {"ok": "ready", "python": sys.version.split()[0]}, wire.packb)
    while True:
        try:
            request = framing.read_frame(requests, wire.unpackb)
        except EOFError:
            break
        op = request.get("op")
        try:
            if op == "tasks":
                reply = {"ok": sim.tasks(request["suite"])}
            elif op == "reset":
                reply = {"ok": sim.reset(request["suite"], int(request["task"]), int(request["init_index"]),
                                         int(request["seed"]), int(request["resolution"]))}
            elif op == "step":
                reply = {"ok": sim.step(request["action"])}
            elif op == "close":
                sim.close()
                framing.write_frame(channel, {"ok": "closed"}, wire.packb)
                break
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as exc:  # noqa: BLE001 - one bad request fails that request, not the worker
            traceback.print_exc()
            reply = {"error": f"{op}: {type(exc).__name__}: {exc}"}
        framing.write_frame(channel, reply, wire.packb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
