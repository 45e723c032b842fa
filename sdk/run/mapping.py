"""Policy action/state names <-> robot joint order, checked once before anything moves.

Why names and not positions: a pack trained with joints in another order (or with a gripper the
robot does not have) must either be reordered exactly or refused, never applied index by index.
Rules: every robot joint must be one of the policy's actions (else the arm would have an
undriven joint -> error). Policy actions the robot lacks are dropped and reported. Policy state
entries the robot does not measure are filled with the pack's training mean for that entry
(the value the normaliser treats as "typical") and reported; that is a stated approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class JointMapping:
    robot_joints: tuple[str, ...]
    action_index: tuple[int, ...]  # robot joint k <- policy action column action_index[k]
    dropped_actions: tuple[str, ...]
    state_names: tuple[str, ...]
    state_source: tuple[int, ...]  # policy state entry i <- robot q[state_source[i]], or -1 = filled
    state_fill: np.ndarray  # values used where state_source is -1

    @classmethod
    def build(
        cls,
        action_names: tuple[str, ...],
        state_names: tuple[str, ...],
        robot_joints: tuple[str, ...],
        state_fill: np.ndarray | None = None,
        where: str = "policy",
    ) -> "JointMapping":
        """Raise ConfigError naming the joints that do not line up."""
        missing = [j for j in robot_joints if j not in action_names]
        if missing:
            raise ConfigError(
                f"{where} actions",
                f"the robot's joints {list(missing)} are not among the policy's actions {list(action_names)}; "
                f"robot joints are {list(robot_joints)} (names must match; order may differ)",
            )
        dup = sorted({n for n in action_names if list(action_names).count(n) > 1})
        if dup:
            raise ConfigError(f"{where} actions", f"duplicate action names {dup}")
        action_index = tuple(action_names.index(j) for j in robot_joints)
        dropped = tuple(n for n in action_names if n not in robot_joints)
        source = tuple(robot_joints.index(n) if n in robot_joints else -1 for n in state_names)
        fill = np.zeros(len(state_names)) if state_fill is None else np.asarray(state_fill, dtype=float)
        if fill.shape[0] < len(state_names):
            raise ConfigError(f"{where} state", f"fill values for {fill.shape[0]} of {len(state_names)} state entries")
        return cls(tuple(robot_joints), action_index, dropped, tuple(state_names), source, fill[: len(state_names)])

    @property
    def filled_state(self) -> tuple[str, ...]:
        return tuple(n for n, s in zip(self.state_names, self.state_source) if s < 0)

    def actions_for_robot(self, actions: np.ndarray) -> np.ndarray:
        """[horizon, policy_dim] -> [horizon, robot_dof] in robot joint order."""
        return np.asarray(actions, dtype=float)[:, list(self.action_index)]

    def state_for_policy(self, q: np.ndarray) -> np.ndarray:
        """Robot q -> the policy's state vector (float32, pack order)."""
        q = np.asarray(q, dtype=float)
        out = np.array(self.state_fill, dtype=float)
        for i, s in enumerate(self.state_source):
            if s >= 0:
                out[i] = q[s]
        return out.astype(np.float32)

    def describe(self) -> dict:
        return {
            "robot_joints": list(self.robot_joints),
            "action_columns": list(self.action_index),
            "dropped_actions": list(self.dropped_actions),
            "filled_state": {n: float(self.state_fill[i]) for i, n in enumerate(self.state_names)
                             if self.state_source[i] < 0},
        }
