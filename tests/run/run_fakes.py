"""Test doubles for the run loop: a robot that records every motion call and a policy with
scripted chunks and a declared latency (no threads, no sleeps: the loop runs on a ManualClock)."""

from __future__ import annotations

import numpy as np

from vla_edge.robots.base import JointState, MotionPort, Robot, RobotCapabilities
from vla_edge.robots.registry import load_registered_config
from vla_edge.types import ActionChunk, Observation


def ur3_config():
    cfg = load_registered_config("ur3-sim")
    return cfg.model_copy(update={"connection": {"render": "off", "realtime": False}})


class RecordingPort(MotionPort):
    def __init__(self, robot: "FakeRobot"):
        self.robot = robot

    def command_joints(self, q_target: np.ndarray) -> None:
        self.robot.commands.append(np.array(q_target, dtype=float))
        self.robot.q = np.array(q_target, dtype=float)  # ideal tracking

    def stop(self) -> None:
        self.robot.stops += 1

    def emergency_stop(self) -> None:
        self.robot.estops += 1


class FakeRobot(Robot):
    """UR3-shaped robot on a ManualClock; counts MotionPort creations and every command."""

    def __init__(self, config, clock, shadow: bool, q0: np.ndarray | None = None, cameras=("base", "wrist")):
        self.name, self.config, self.clock, self.shadow = "fake-ur3", config, clock, shadow
        self.q = np.array(q0 if q0 is not None else [0.1, -1.2, 1.0, -1.3, -1.5, 0.2], dtype=float)
        self.commands: list[np.ndarray] = []
        self.motion_ports = 0
        self.stops = self.estops = 0
        self.connected = False
        self._caps = RobotCapabilities(tuple(config.joints), config.control_rate_hz, (), 1, tuple(cameras))

    @property
    def capabilities(self) -> RobotCapabilities:
        return self._caps

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def read_state(self) -> JointState:
        return JointState(q=self.q.copy(), qd=np.zeros_like(self.q), timestamp=self.clock.now())

    def read_cameras(self) -> dict[str, np.ndarray]:
        return {c: np.full((16, 16, 3), 100, np.uint8) for c in self._caps.camera_names}

    def open_motion(self) -> MotionPort:
        self.motion_ports += 1
        if self.shadow:
            raise AssertionError("open_motion called on a shadow robot")
        return RecordingPort(self)


class FakePolicy:
    """Chunks are smooth random trajectories around the observed state (in the policy's own
    action order, which may differ from the robot's); `latency_s` is what each inference reports."""

    def __init__(self, action_names, horizon=10, period=0.05, latency_s=0.1, seed=0, amplitude=0.05):
        self.action_names = tuple(action_names)
        self.horizon, self.period, self.latency_s = horizon, period, latency_s
        self.rng = np.random.default_rng(seed)
        self.amplitude = amplitude
        self.calls: list[Observation] = []
        self.chunks: list[ActionChunk] = []
        self.state_index: dict[str, int] = {}

    def infer(self, obs: Observation) -> ActionChunk:
        self.calls.append(obs)
        start = np.array([obs.state[self.state_index[n]] if n in self.state_index else 0.0 for n in self.action_names])
        slope = self.rng.uniform(-1, 1, len(self.action_names)) * self.amplitude
        rows = start + np.arange(self.horizon)[:, None] * slope * self.period
        chunk = ActionChunk(actions=rows.astype(np.float32), control_period_s=self.period, timestamp=obs.timestamp,
                            names=self.action_names, latency_ms={"total": self.latency_s * 1e3})
        self.chunks.append(chunk)
        return chunk
