"""What the serve tests share: a websocket client, a request/reply helper, a random observation,
and a stand-in Policy whose forward pass takes a known time (for deterministic fairness tests)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
from websockets.sync.client import connect

from vla_edge.serve import KeyMap, wire
from vla_edge.types import ActionChunk, Observation

FLAT = KeyMap(images={"base": "observation/image", "wrist": "observation/wrist_image"})


@contextmanager
def client(port, api_key=None, ssl=None, host="127.0.0.1"):
    """Connect as openpi's client does (Authorization: Api-Key <key> when given a key)."""
    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
    scheme = "wss" if ssl is not None else "ws"
    with connect(f"{scheme}://{host}:{port}", compression=None, max_size=None, open_timeout=10,
                 additional_headers=headers, ssl=ssl) as ws:
        yield ws, wire.unpackb(ws.recv(timeout=10))


def request(ws, message, timeout=60):
    ws.send(wire.packb(message))
    answer = ws.recv(timeout=timeout)
    return answer if isinstance(answer, str) else wire.unpackb(answer)


def observation(rng, policy, noise=True):
    message = {"images": {"base": rng.integers(0, 256, (96, 128, 3), dtype=np.uint8),
                          "wrist": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)},
               "state": rng.standard_normal(len(policy.info.state_names)),
               "prompt": "put the cup on the plate"}
    if noise:
        message["noise"] = rng.standard_normal(policy.noise_shape).astype(np.float32)
    return message


class TimedPolicy:
    """A Policy stand-in whose forward pass takes `seconds` (sleep) and whose chunk is the first
    action columns of the request's noise - so a test knows exactly how long each pass lasts
    and which noise each reply was made from. Everything else is the real Policy's."""

    def __init__(self, real, seconds: float):
        self.real, self.seconds = real, seconds
        self.info, self.pack, self.noise_shape, self.seed = real.info, real.pack, real.noise_shape, real.seed
        self.passes: list[int] = []  # requests per forward pass, in order

    def _chunk(self, obs: Observation, noise: np.ndarray) -> ActionChunk:
        obs.validate(self.info.required_cameras, len(self.info.state_names))
        return ActionChunk(actions=noise[:, :len(self.info.action_names)].copy(),
                           control_period_s=self.info.control_period_s, timestamp=obs.timestamp,
                           names=self.info.action_names, units=self.info.action_units,
                           latency_ms={"total": self.seconds * 1e3})

    def infer(self, obs: Observation, noise: np.ndarray) -> ActionChunk:
        self.passes.append(1)
        time.sleep(self.seconds)
        return self._chunk(obs, noise)


class TimedBatchPolicy(TimedPolicy):
    """The same, with `infer_batch`: one pass of `seconds` for the whole batch."""

    def infer_batch(self, requests: Sequence[tuple[Observation, np.ndarray]]):
        self.passes.append(len(requests))
        time.sleep(self.seconds)
        out = []
        for obs, noise in requests:
            try:
                out.append(self._chunk(obs, noise))
            except Exception as exc:  # noqa: BLE001 - the protocol: the refusal in its place
                out.append(exc)
        return out
