"""In-memory Robot and MotionPort for safety-filter tests: records every call, moves nothing."""

from __future__ import annotations

import numpy as np

from vla_edge.robots.base import JointState, MotionPort, Robot, RobotCapabilities
from vla_edge.robots.config import RobotConfig


class RecordingPort(MotionPort):
    def __init__(self) -> None:
        self.commands: list[np.ndarray] = []
        self.stops = 0
        self.estops = 0

    def command_joints(self, q_target: np.ndarray) -> None:
        self.commands.append(np.array(q_target, dtype=float))

    def stop(self) -> None:
        self.stops += 1

    def emergency_stop(self) -> None:
        self.estops += 1


class FakeRobot(Robot):
    """A robot whose measured state is whatever the test sets; open_motion hands out one port."""

    def __init__(self, config: RobotConfig, q0: np.ndarray):
        self.name = config.name
        self._caps = RobotCapabilities(
            joint_names=tuple(config.joints),
            control_rate_hz=config.control_rate_hz,
            gripper_indices=config.gripper_indices,
            arms=len(config.kinematics.arms),
        )
        self.q = np.array(q0, dtype=float)
        self.port: RecordingPort | None = None
        self.open_calls = 0

    @property
    def capabilities(self) -> RobotCapabilities:
        return self._caps

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def read_state(self, timestamp: float = 0.0) -> JointState:
        return JointState(q=self.q.copy(), qd=np.zeros_like(self.q), timestamp=timestamp)

    def open_motion(self) -> MotionPort:
        self.open_calls += 1
        self.port = RecordingPort()
        return self.port


class FakeClock:
    """Manually advanced monotonic clock."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt
