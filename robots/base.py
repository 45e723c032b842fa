"""The narrow robot contract shared by every arm, real or simulated.

Two deliberate splits (see shared/style.md):
- Reading a robot (`Robot`) and moving it (`MotionPort`) are different objects. A robot opened
  in shadow mode never creates a MotionPort, so shadow mode cannot move the arm by construction.
- Only the safety filter (`vla_edge.robots.safety`) is given the MotionPort; nothing else in the
  code base calls `MotionPort.command_joints`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class JointState:
    """One timestamped reading of the arm(s); all arrays are in the robot's units (rad, m)."""

    q: np.ndarray  # joint positions, all arms concatenated, grippers last per arm as in action order
    qd: np.ndarray  # joint velocities, same layout as q
    timestamp: float  # time.monotonic() seconds when the reading was taken
    tcp_pose: np.ndarray | None = None  # per arm [x, y, z, rx, ry, rz] (m, rad) if the driver reports it
    status: dict[str, object] = field(default_factory=dict)  # robot/safety mode, protective stop, ...


@dataclass(frozen=True)
class RobotCapabilities:
    """What a policy and the safety filter need to know about an arm before it moves."""

    joint_names: tuple[str, ...]  # one per commanded DOF, in action order (grippers included)
    control_rate_hz: float  # rate at which the driver expects streaming joint targets
    gripper_indices: tuple[int, ...] = ()
    arms: int = 1
    camera_names: tuple[str, ...] = ()

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz


class MotionPort(ABC):
    """The only way to make an arm move. Created by a driver in live mode and handed to the
    safety filter; shadow-mode drivers never construct one."""

    @abstractmethod
    def command_joints(self, q_target: np.ndarray) -> None:
        """Stream one joint-position target for the next control tick (already filtered)."""

    @abstractmethod
    def stop(self) -> None:
        """Controlled stop: decelerate and hold. Must be safe to call repeatedly and on any path."""

    @abstractmethod
    def emergency_stop(self) -> None:
        """Stop as fast as the controller allows (protective/e-stop semantics of the arm)."""


class Robot(ABC):
    """A connected arm (or bimanual pair) that can be observed; motion only via `open_motion`."""

    name: str

    @property
    @abstractmethod
    def capabilities(self) -> RobotCapabilities: ...

    @abstractmethod
    def connect(self) -> None:
        """Open the read path (state, cameras). Raises a VlaEdgeError subclass if unreachable."""

    @abstractmethod
    def disconnect(self) -> None:
        """Stop any motion this robot started and release every connection."""

    @abstractmethod
    def read_state(self) -> JointState: ...

    def read_cameras(self) -> dict[str, np.ndarray]:
        """Camera images the robot itself provides (simulators render them); real arms: none."""
        return {}

    @abstractmethod
    def open_motion(self) -> MotionPort:
        """Create the motion path (live mode only). Called by the safety filter, nobody else."""

    # lerobot-style feature descriptions so datasets/loggers can describe the robot.
    @property
    def observation_features(self) -> dict[str, tuple]:
        caps = self.capabilities
        features: dict[str, tuple] = {f"{j}.pos": (float,) for j in caps.joint_names}
        for cam in caps.camera_names:
            features[cam] = ("image",)
        return features

    @property
    def action_features(self) -> dict[str, tuple]:
        return {f"{j}.pos": (float,) for j in self.capabilities.joint_names}

    def __enter__(self) -> "Robot":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
