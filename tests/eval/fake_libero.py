"""A FAKE LIBERO environment for the harness tests (not a simulator of anything): it implements
the `SimEnvironment` interface with a point "end effector" that integrates the position part of
each action, images that encode the state and the camera's orientation, and success when the
point reaches a goal. It lets the tests check the episode loop, seeds, pairing, resumption,
videos and workers in milliseconds; the real LIBERO process is tested in test_libero_real.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vla_edge.eval.policies import Inference
from vla_edge.eval.sim_env import StepResult, TaskInfo

TASKS = [TaskInfo(0, "fake_reach_left", "reach to the left", 3), TaskInfo(1, "fake_reach_up", "reach up", 3)]
GOALS = {0: np.array([-0.3, 0.0, 1.0]), 1: np.array([0.0, 0.0, 1.3])}


def marker_image(size: int, value: int) -> np.ndarray:
    """An image whose top-left quarter is bright red (value in green): after LIBERO's 180 degree
    flip the marker must be at the bottom right."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[..., 1] = value
    img[: size // 4, : size // 4, 0] = 255
    return img


class FakeLiberoEnv:
    """Deterministic given (task, init_index, seed); counts calls so tests see what ran."""

    def __init__(self):
        self.resets: list[tuple] = []
        self.steps = 0
        self.closed = False
        self._pos = np.zeros(3)
        self._task = 0
        self._res = 256
        self._t = 0

    def tasks(self, suite: str) -> list[TaskInfo]:
        return list(TASKS)

    def _raw(self) -> dict[str, np.ndarray]:
        value = int(np.clip(128 + 200 * self._pos[0], 0, 255))
        angle = 0.1 * self._t
        quat = np.array([np.sin(angle / 2), 0.0, 0.0, np.cos(angle / 2)])  # x, y, z, w
        return {"agentview_image": marker_image(self._res, value), "robot0_eye_in_hand_image": marker_image(self._res, 255 - value),
                "robot0_eef_pos": self._pos.copy(), "robot0_eef_quat": quat,
                "robot0_gripper_qpos": np.array([0.04, -0.04])}

    def reset(self, suite: str, task: int, init_index: int, seed: int, resolution: int) -> dict[str, np.ndarray]:
        self.resets.append((suite, task, init_index, seed))
        rng = np.random.default_rng([seed, task, init_index])
        self._pos = np.array([0.0, 0.0, 1.0]) + 0.05 * rng.standard_normal(3)
        self._task, self._res, self._t = task, resolution, 0
        return self._raw()

    def step(self, action: np.ndarray) -> StepResult:
        self.steps += 1
        self._t += 1
        self._pos = self._pos + 0.05 * np.clip(np.asarray(action[:3], dtype=float), -1, 1)
        done = bool(np.linalg.norm(self._pos - GOALS[self._task]) < 0.06)
        return StepResult(self._raw(), done)

    def close(self) -> None:
        self.closed = True


@dataclass
class NoisePolicy:
    """Stand-in policy: its chunk is `gain` x the first columns of the noise it is given, plus a
    pull toward `toward` (so some episodes succeed). Records every observation it saw."""

    label: str
    gain: float = 0.3
    toward: tuple[float, float, float] | None = None
    noise_shape: tuple[int, ...] | None = (10, 32)
    seen: list = field(default_factory=list)

    def infer(self, obs, noise):
        self.seen.append(obs)
        rng = np.random.default_rng(0)
        n = noise if noise is not None else rng.standard_normal(self.noise_shape)
        actions = self.gain * np.asarray(n[:, :7], dtype=np.float64)
        if self.toward is not None:
            actions[:, :3] += 4.0 * (np.asarray(self.toward) - obs.state[:3])
        return Inference(actions, 0.5)

    def describe(self):
        return {"kind": "fake", "label": self.label}

    def close(self):
        pass


@dataclass(frozen=True)
class FakeEnvFactory:
    """Picklable, so worker processes can build their own fake environment."""

    def __call__(self) -> FakeLiberoEnv:
        return FakeLiberoEnv()


@dataclass(frozen=True)
class NoisePolicyFactory:
    def __call__(self, spec: str, target: str, label: str) -> NoisePolicy:
        goal = tuple(GOALS[0]) if spec == "goal-seeker" else None
        return NoisePolicy(label, gain=0.3 if spec != "quiet" else 0.01, toward=goal)
