"""A LIBERO observation -> the `Observation` every Policy takes (and openpi's flat request).

Why its own module: this mapping is where a closed-loop score silently goes wrong (an image
upside down, a quaternion where the model expects an axis-angle vector), so it is written once,
from openpi's conventions, and tested against the simulator's own observation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..families.pi05.images import resize_with_pad
from ..types import Observation
from . import conventions as C

# Keys of the raw observation the simulator worker sends (a subset of robosuite's).
RAW_KEYS = ("agentview_image", "robot0_eye_in_hand_image", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")


def camera_images(raw: dict[str, np.ndarray], size: int = C.MODEL_IMAGE_SIZE) -> dict[str, np.ndarray]:
    """Both cameras rotated by 180 degrees and resized with padding, as uint8 (openpi's client
    does this before sending; the model's own resize then has nothing left to do)."""
    out = {}
    for camera, key in ((C.AGENTVIEW, "agentview_image"), (C.WRIST, "robot0_eye_in_hand_image")):
        image = np.ascontiguousarray(np.asarray(raw[key])[::-1, ::-1])
        out[camera] = resize_with_pad(image, size)
    return out


def state_vector(raw: dict[str, np.ndarray]) -> np.ndarray:
    """eef position, eef axis-angle, gripper finger positions: 8 float32."""
    return np.concatenate([np.asarray(raw["robot0_eef_pos"], dtype=np.float64),
                           C.quat_to_axis_angle(raw["robot0_eef_quat"]),
                           np.asarray(raw["robot0_gripper_qpos"], dtype=np.float64)]).astype(np.float32)


def to_observation(raw: dict[str, np.ndarray], prompt: str, timestamp: float) -> Observation:
    return Observation(cameras=camera_images(raw), state=state_vector(raw), prompt=prompt, timestamp=timestamp)


def to_openpi_request(obs: Observation) -> dict:
    """openpi's LIBERO request keys (what `examples/libero/main.py` sends to a policy server)."""
    return {"observation/image": obs.cameras[C.AGENTVIEW], "observation/wrist_image": obs.cameras[C.WRIST],
            "observation/state": obs.state, "prompt": obs.prompt}


@dataclass(frozen=True)
class SpaceCheck:
    """A pack's spaces checked against LIBERO's before any episode runs."""

    action_dim: int  # columns of the policy's chunk that are LIBERO actions (a prefix)


def check_spaces(label: str, state_names: tuple[str, ...], action_names: tuple[str, ...],
                 cameras: dict[str, str], required: tuple[str, ...]) -> SpaceCheck:
    """Refuse a policy whose state/action/camera names are not LIBERO's: run index by index, a UR3
    pack's joint targets would be applied as end-effector deltas."""
    hint = "make LIBERO packs with `--robot libero` (pack synth / pack import)"
    if tuple(state_names) != C.STATE_NAMES:
        raise ConfigError(f"pack {label} state", f"expected LIBERO's {list(C.STATE_NAMES)}, got {list(state_names)}; {hint}")
    if tuple(action_names[: len(C.ACTION_NAMES)]) != C.ACTION_NAMES:
        raise ConfigError(f"pack {label} actions",
                          f"expected LIBERO's {list(C.ACTION_NAMES)} first, got {list(action_names)}; {hint}")
    known = {C.AGENTVIEW, C.WRIST}
    unknown = sorted((set(cameras.values()) | set(required)) - known)
    if unknown:
        raise ConfigError(f"pack {label} cameras", f"LIBERO provides {sorted(known)}, the pack wants {unknown}; {hint}")
    return SpaceCheck(action_dim=len(C.ACTION_NAMES))
