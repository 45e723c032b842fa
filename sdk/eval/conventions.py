"""openpi's LIBERO evaluation conventions, as facts (openpi `examples/libero/main.py`, LeRobot's
LIBERO env): what a pi0/pi0.5 LIBERO checkpoint was trained to see and to output.

- cameras: `agentview_image` and `robot0_eye_in_hand_image`, rendered at 256x256 and rotated by
  180 degrees (LIBERO renders them upside down relative to the training data), resized with
  padding to 224 before they are sent;
- state (8): end-effector position (3), end-effector orientation as an axis-angle vector (3, from
  robosuite's x, y, z, w quaternion), gripper finger positions (2);
- actions (7): end-effector delta position (3), delta rotation (3), gripper (-1 open, +1 close),
  for robosuite's OSC_POSE controller at 20 Hz;
- episode: `num_steps_wait` (10) dummy actions (no motion, gripper open) while objects settle,
  then a new chunk every `replan_steps` (5) steps, at most `MAX_STEPS[suite]` policy steps;
  success is the environment's `done` (the task's BDDL goal holds);
- task instances: the suite's fixed initial states, episode i uses initial state i.
"""

from __future__ import annotations

import math

import numpy as np

# Longest successful demonstration per suite, rounded up: openpi's (and LeRobot's) step budget.
MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
SUITES: tuple[str, ...] = tuple(MAX_STEPS)

ENV_RESOLUTION = 256  # what openpi renders at
MODEL_IMAGE_SIZE = 224  # resize-with-pad target
NUM_STEPS_WAIT = 10
REPLAN_STEPS = 5
EPISODES_PER_TASK = 50  # LIBERO ships 50 initial states per task; published numbers use all 50
DUMMY_ACTION = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0])
CONTROL_PERIOD_S = 0.05  # robosuite control_freq 20 Hz

# Names of the spaces a LIBERO pack uses (`pack synth --robot libero`, `pack import --robot libero`).
AGENTVIEW, WRIST = "agentview", "wrist"
CAMERA_SLOTS = {"base_0_rgb": AGENTVIEW, "left_wrist_0_rgb": WRIST}
STATE_NAMES: tuple[str, ...] = ("eef_x", "eef_y", "eef_z", "eef_axis_angle_x", "eef_axis_angle_y",
                                "eef_axis_angle_z", "gripper_finger_left", "gripper_finger_right")
STATE_UNITS: tuple[str, ...] = ("m", "m", "m", "rad", "rad", "rad", "m", "m")
ACTION_NAMES: tuple[str, ...] = ("eef_dx", "eef_dy", "eef_dz", "eef_drx", "eef_dry", "eef_drz", "gripper")
ACTION_UNITS: tuple[str, ...] = ("scaled", "scaled", "scaled", "scaled", "scaled", "scaled", "-1 open, +1 close")


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """robosuite quaternion (x, y, z, w) -> axis * angle (rad), angle in [0, 2*pi]; the identity
    (and anything within float noise of it) maps to zeros, as in openpi."""
    q = np.asarray(quat, dtype=np.float64)
    w = float(np.clip(q[3], -1.0, 1.0))
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(w) / den


def libero_spaces() -> dict:
    """Spaces, cameras and (placeholder) statistics of a LIBERO pack. The statistics are only used
    by synthesised packs (random weights); an imported checkpoint brings its own."""
    state_mean = [-0.05, 0.0, 1.05, 3.0, 0.0, 0.0, 0.03, -0.03]
    state_spread = [0.2, 0.3, 0.2, 0.5, 0.5, 0.5, 0.015, 0.015]
    act_mean, act_spread = [0.0] * 7, [0.9] * 6 + [1.0]
    return {
        "state_space": {"names": list(STATE_NAMES), "units": list(STATE_UNITS)},
        "action_space": {"names": list(ACTION_NAMES), "units": list(ACTION_UNITS), "control_period_s": CONTROL_PERIOD_S},
        "cameras": dict(CAMERA_SLOTS),
        "required_cameras": [AGENTVIEW],
        "norm_stats": {"norm_stats": {
            "state": _stats(state_mean, state_spread), "actions": _stats(act_mean, act_spread)}},
    }


def _stats(mean: list[float], spread: list[float]) -> dict:
    m, s = np.asarray(mean), np.asarray(spread)
    return {"mean": m.tolist(), "std": (s / 2).tolist(), "q01": (m - s).tolist(), "q99": (m + s).tolist()}
