"""A scripted operator for the simulators: the demonstration the built-in demo policy is fitted to.

Why: a shadow trial compares the policy with an arm that someone else moves (an operator, the
cell's existing program). In the simulator that someone is this script: with
`connection.operator: demo` and no motion path open (shadow mode), the simulated arm repeats a
smooth loop - out from the start pose toward the red cube the base camera sees, and back along a
slightly different path - while the policy runs beside it. The same loop, rendered, is the
training data of the demo pack (sdk/packs/demo_policy.py), so the policy's shadow commands can
be compared with what the arm really did. A live run never uses it: once the safety filter opens
the motion path, only the filter moves the arm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import RobotConfig
from ..kinematics import RobotKinematics

OPERATORS = ("demo",)
LOOP_PERIOD_S = 10.0  # one reach out and back: slow enough for one target per chunk
_ABOVE_CUBE_M = 0.06  # the reach ends this far above the cube's centre
_SIDE_SHARE = 0.3  # the return path is offset sideways by this share of the reach (phase is visible)
_MAX_REACH_RAD = 0.5  # per joint: keeps speeds far inside every robot's operating limits
_ARM_JOINTS_USED = 3  # the reach uses each arm's first joints (base, shoulder, elbow)
_INSET = 0.2  # share of the reach the loop keeps away from the start pose


@dataclass(frozen=True)
class DemoLoop:
    """q(t) = start + (INSET + (1 - INSET)(1 - cos wt)/2) * reach + sin(wt) * side: smooth and
    periodic. The loop stays INSET of the reach away from the start pose, which on some arms sits
    right at a joint limit (ARX5 joint2 = 0), so a policy's small errors near the start are not
    beyond the arm's range; the arm moves from its start pose onto the loop in the first instants."""

    start: np.ndarray
    reach: np.ndarray
    side: np.ndarray
    period_s: float = LOOP_PERIOD_S

    def position(self, t: float) -> np.ndarray:
        w = 2.0 * np.pi / self.period_s
        share = _INSET + (1.0 - _INSET) * 0.5 * (1.0 - np.cos(w * t))
        return self.start + share * self.reach + np.sin(w * t) * self.side

    def positions(self, times: np.ndarray) -> np.ndarray:
        """position() for many times: (n, dof)."""
        return np.stack([self.position(float(t)) for t in np.asarray(times, dtype=float)])

    def describe(self) -> str:
        return (f"reach {np.round(self.reach, 3).tolist()} rad out and back every {self.period_s:g} s")


def _reach_toward(kin: RobotKinematics, start: np.ndarray, joints: list[int], arm: int,
                  goal: np.ndarray) -> np.ndarray:
    """Joint offset (on `joints`) moving arm `arm`'s TCP toward `goal`: damped Gauss-Newton on
    the robot's own forward kinematics, each joint's offset clipped to _MAX_REACH_RAD."""
    q = start.astype(float).copy()
    for _ in range(30):
        p = kin.tcp_positions(q)[0, arm]
        err = goal - p
        if np.linalg.norm(err) < 1e-3:
            break
        jac = np.zeros((3, len(joints)))
        for k, j in enumerate(joints):
            dq = q.copy()
            dq[j] += 1e-5
            jac[:, k] = (kin.tcp_positions(dq)[0, arm] - p) / 1e-5
        step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-3 * np.eye(3), err)
        q[joints] = start[joints] + np.clip(q[joints] + step - start[joints], -_MAX_REACH_RAD, _MAX_REACH_RAD)
    return q - start


def demo_loop(config: RobotConfig, start: np.ndarray, cube: np.ndarray) -> DemoLoop:
    """The demonstration for a robot whose arm(s) start at `start` with the cube at `cube` (m):
    every arm reaches toward a point above the cube, grippers stay where they are."""
    kin = RobotKinematics(config.kinematics)
    reach = np.zeros(config.dof)
    side = np.zeros(config.dof)
    goal = np.asarray(cube, dtype=float) + np.array([0.0, 0.0, _ABOVE_CUBE_M])
    for arm_index, arm in enumerate(config.kinematics.arms):
        joints = list(arm.joint_indices[:_ARM_JOINTS_USED])
        reach += _reach_toward(kin, start, joints, arm_index, goal)
        side[joints[0]] = _SIDE_SHARE * float(np.linalg.norm(reach[joints]))  # sideways: the base joint
    lo = np.asarray(config.limits.position_min or config.hardware_limits.position_min) + config.limits.position_margin
    hi = np.asarray(config.limits.position_max or config.hardware_limits.position_max) - config.limits.position_margin
    loop = DemoLoop(np.asarray(start, dtype=float), reach, side)
    path = loop.positions(np.linspace(0.0, loop.period_s, 200))
    # Inside the operating range with room to spare: shrink the loop until it is.
    for _ in range(20):
        if np.all(path >= lo) and np.all(path <= hi):
            break
        loop = DemoLoop(loop.start, 0.8 * loop.reach, 0.8 * loop.side)
        path = loop.positions(np.linspace(0.0, loop.period_s, 200))
    return loop
