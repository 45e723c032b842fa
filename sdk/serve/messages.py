"""Request messages -> Observation, and ActionChunk -> reply, for `vla-edge serve`.

Two request layouts are accepted:
  vla-edge:  {"images": {camera: HxWx3 uint8}, "state": [..], "prompt": str, "noise"?: float32 [H, D]}
  flat:      openpi-style keys such as {"observation/image": .., "observation/state": .., "prompt": ..};
             the server is told which key holds which robot camera (`KeyMap`), because those
             names differ per robot setup.
Control messages ({"__ctrl__": "reset" | "episode_start" | "episode_end"}) restart the
connection's noise sequence at episode boundaries; a resetting one may carry {"seed": N} to start
that connection's sequence from seed N. Anything malformed raises ObservationError naming the key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ObservationError
from ..types import ActionChunk, Observation

CONTROL_KEY = "__ctrl__"
RESETTING_CONTROLS = frozenset({"reset", "episode_start"})
KNOWN_CONTROLS = RESETTING_CONTROLS | {"episode_end"}


@dataclass(frozen=True)
class KeyMap:
    """Where a flat (openpi-style) request keeps each input."""

    images: dict[str, str] = field(default_factory=dict)  # robot camera name -> request key
    state: str = "observation/state"
    prompt: str = "prompt"

    @classmethod
    def parse(cls, image_specs: list[str], state: str, prompt: str) -> "KeyMap":
        images = {}
        for spec in image_specs:
            camera, sep, key = spec.partition("=")
            if not sep or not camera or not key:
                raise ObservationError("--image", "CAMERA=REQUEST_KEY, e.g. base=observation/image", repr(spec))
            images[camera] = key
        return cls(images, state, prompt)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def control_of(message: dict[str, Any]) -> str | None:
    control = _text(message.get(CONTROL_KEY))
    if control is None:
        return None
    if control not in KNOWN_CONTROLS:
        raise ObservationError(CONTROL_KEY, f"one of {sorted(KNOWN_CONTROLS)}", repr(control))
    return control


def control_seed(message: dict[str, Any], control: str) -> int | None:
    """The seed a resetting control asks for (None: the server's --seed)."""
    seed = message.get("seed")
    if seed is None:
        return None
    if control not in RESETTING_CONTROLS:
        raise ObservationError("seed", f"only with {sorted(RESETTING_CONTROLS)}", f"a seed with {control!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ObservationError("seed", "a non-negative integer", repr(seed))
    return int(seed)


def _images(message: dict[str, Any], keys: KeyMap) -> dict[str, Any]:
    if "images" in message:
        images = message["images"]
        if not isinstance(images, dict):
            raise ObservationError("images", "a map of camera name -> HxWx3 uint8 array", type(images).__name__)
        return {_text(k): v for k, v in images.items()}
    if not keys.images:
        raise ObservationError("images", "an 'images' map, or a server started with --image CAMERA=KEY for flat keys",
                               f"keys {sorted(map(str, message))}")
    return {camera: message[key] for camera, key in keys.images.items() if key in message}


def to_observation(message: Any, keys: KeyMap, default_prompt: str | None,
                   noise_shape: tuple[int, ...]) -> tuple[Observation, np.ndarray | None]:
    """The Policy validates images/state/prompt itself (dtype, shape, finiteness, required
    cameras); this only finds them and checks what the Policy cannot see: the noise."""
    if not isinstance(message, dict):
        raise ObservationError("message", "a map of observation fields", type(message).__name__)
    message = {_text(k): v for k, v in message.items()}
    canonical = "images" in message
    state_key = "state" if canonical else keys.state
    if state_key not in message:
        raise ObservationError(state_key, "the robot state vector", "missing")
    prompt = _text(message.get("prompt" if canonical else keys.prompt, default_prompt))
    if prompt is None:
        raise ObservationError("prompt" if canonical else keys.prompt, "an instruction (or a server --prompt)", "missing")
    state = message[state_key]
    obs = Observation(cameras=_images(message, keys), state=np.asarray(state) if isinstance(state, list) else state,
                      prompt=prompt, timestamp=time.monotonic())
    noise = message.get("noise")
    if noise is not None:
        if not isinstance(noise, np.ndarray) or noise.dtype != np.float32 or noise.shape != noise_shape:
            got = f"{noise.dtype} {noise.shape}" if isinstance(noise, np.ndarray) else type(noise).__name__
            raise ObservationError("noise", f"float32 array {noise_shape}", got)
        if not np.all(np.isfinite(noise)):
            raise ObservationError("noise", "finite values", "NaN or Inf")
    return obs, noise


def reply(chunk: ActionChunk, infer_ms: float, queue_ms: float, batch_size: int = 1) -> dict[str, Any]:
    """`actions` as openpi clients read it, plus what a robot needs to schedule the rows.
    queue_ms: from the request's arrival to the start of its forward pass (waiting for other
    clients' turns); infer_ms: that pass, which served `batch_size` requests."""
    return {
        "actions": np.asarray(chunk.actions, dtype=np.float32),
        "names": list(chunk.names), "units": list(chunk.units),
        "control_period_s": chunk.control_period_s,
        "policy_timing": {k: float(v) for k, v in chunk.latency_ms.items()},
        "server_timing": {"infer_ms": infer_ms, "queue_ms": queue_ms, "batch_size": batch_size},
    }
