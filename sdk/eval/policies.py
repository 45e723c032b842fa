"""What an episode asks of a policy, for packs and for openpi websocket servers alike.

A pack goes through the one `Policy` API a robot run uses (load_policy -> Policy.infer on an
`Observation`); a `ws://host:port` policy gets openpi's LIBERO request (`observation/image`,
`observation/wrist_image`, `observation/state`, `prompt`), so the same harness scores
`vla-edge serve` and a real openpi server. Either way the episode gets the LIBERO action
columns of the chunk and the inference time as the harness measured it.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, VlaEdgeError
from ..types import Observation
from . import conventions as C
from .observation import check_spaces, to_openpi_request


@dataclass
class Inference:
    actions: np.ndarray  # [horizon, 7] LIBERO actions
    latency_ms: float  # wall time of the call, as the episode waited for it


class ChunkPolicy(Protocol):
    label: str
    noise_shape: tuple[int, ...] | None  # None: the policy draws its own noise (cannot be paired exactly)

    def infer(self, obs: Observation, noise: np.ndarray | None) -> Inference: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class PackPolicy:
    """A pack on a target, through `vla_edge.load_policy`."""

    def __init__(self, pack: str, target: str, label: str):
        from ..packs.demo import resolve_pack  # noqa: PLC0415
        from ..policy import load_policy  # noqa: PLC0415

        self.label = label
        self._policy = load_policy(resolve_pack(pack), target=target)
        info = self._policy.info
        self._dim = check_spaces(label, info.state_names, info.action_names, info.cameras, info.required_cameras).action_dim
        self.noise_shape: tuple[int, ...] | None = tuple(self._policy.noise_shape)

    def infer(self, obs: Observation, noise: np.ndarray | None) -> Inference:
        t0 = time.perf_counter()
        chunk = self._policy.infer(obs, noise=noise)
        return Inference(np.asarray(chunk.actions[:, : self._dim], dtype=np.float64), (time.perf_counter() - t0) * 1e3)

    def describe(self) -> dict[str, Any]:
        info = self._policy.info
        return {"kind": "pack", "label": self.label, "pack": info.pack_dir, "name": info.pack_name,
                "target": self._policy.target, "target_reason": self._policy.target_reason,
                "quant_recipe": info.quant_recipe, "bits_per_weight": info.bits_per_weight, "horizon": info.horizon}

    def close(self) -> None:
        self._policy.close()


@dataclass
class _Server:
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_vla_edge(self) -> bool:
        return self.metadata.get("server") == "vla-edge"


class WebsocketPolicy:
    """An openpi-protocol policy server (msgpack-numpy over a websocket)."""

    def __init__(self, uri: str, label: str, api_key: str | None = None, timeout_s: float = 600.0):
        from websockets.exceptions import InvalidStatus  # noqa: PLC0415
        from websockets.sync.client import connect  # noqa: PLC0415

        from ..serve import wire  # noqa: PLC0415

        self.label, self._uri, self._timeout, self._wire = label, uri, timeout_s, wire
        # openpi-client's scheme (`vla-edge serve` checks it): the key never goes into a URI or a log line
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        try:
            # wss:// verifies the server against Python's default trust store (SSL_CERT_FILE honoured)
            self._ws = connect(uri, compression=None, max_size=None, open_timeout=30, additional_headers=headers,
                               legacy=True)  # a connection held across episodes, not a `with` block
            self._server = _Server(wire.unpackb(self._ws.recv(timeout=30)))
        except InvalidStatus as exc:
            raise ConfigError(f"--pack {uri}", _refusal(exc.response.status_code, api_key is not None)) from exc
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(f"--pack {uri}", f"the server's TLS certificate is not trusted ({exc.verify_message}); "
                              "for a private or self-signed certificate set SSL_CERT_FILE=cert.pem") from exc
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--pack {uri}", f"cannot reach the policy server: {exc}") from exc
        except Exception as exc:  # other handshake failures (not a websocket server, bad metadata) have several types
            raise ConfigError(f"--pack {uri}", f"handshake with the policy server failed: {exc}") from exc
        meta = self._server.metadata
        self.noise_shape = tuple(meta["noise_shape"]) if self._server.is_vla_edge and "noise_shape" in meta else None
        if self._server.is_vla_edge:
            self._check_vla_edge(meta)

    def _check_vla_edge(self, meta: dict[str, Any]) -> None:
        """A vla-edge server says its spaces and key mapping: refuse a mismatch before an episode."""
        check_spaces(self.label, tuple(meta.get("state_names", ())), tuple(meta.get("action_names", ())), {}, ())
        images = meta.get("flat_keys", {}).get("images", {})
        want = {C.AGENTVIEW: "observation/image", C.WRIST: "observation/wrist_image"}
        if any(images.get(cam) != key for cam, key in want.items() if cam in meta.get("cameras", [])):
            raise ConfigError(f"--pack {self._uri}", "the server does not read openpi's LIBERO keys; start it with "
                              "`vla-edge serve --pack P --image agentview=observation/image "
                              "--image wrist=observation/wrist_image`")

    def infer(self, obs: Observation, noise: np.ndarray | None) -> Inference:
        request = to_openpi_request(obs)
        if noise is not None and self._server.is_vla_edge:
            request["noise"] = np.asarray(noise, dtype=np.float32)
        t0 = time.perf_counter()
        self._ws.send(self._wire.packb(request))
        answer = self._ws.recv(timeout=self._timeout)
        latency = (time.perf_counter() - t0) * 1e3
        if isinstance(answer, str):  # openpi servers answer an error as text
            raise VlaEdgeError(f"policy server {self._uri}: {answer.strip().splitlines()[-1] if answer.strip() else answer}")
        reply = self._wire.unpackb(answer)
        actions = np.asarray(reply["actions"], dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] < len(C.ACTION_NAMES):
            raise VlaEdgeError(f"policy server {self._uri}: actions of shape {actions.shape}, expected [horizon, >= 7]")
        return Inference(actions[:, : len(C.ACTION_NAMES)], latency)

    def describe(self) -> dict[str, Any]:
        meta = self._server.metadata
        return {"kind": "websocket", "label": self.label, "uri": self._uri,
                "server": meta.get("server", "openpi (no server name in its metadata)"),
                **{k: meta[k] for k in ("pack", "target", "quant_recipe", "horizon") if k in meta}}

    def close(self) -> None:
        self._ws.close()


def _refusal(status: int, sent_key: bool) -> str:
    if status == 401:
        return ("the server refused the API key (HTTP 401: wrong key)" if sent_key else
                "the server wants an API key (HTTP 401); give it with --api-key-file PATH or $VLA_EDGE_API_KEY")
    if status == 503:
        return "the server is at its connection limit (HTTP 503); try again or raise its --max-connections"
    return f"the server refused the websocket handshake (HTTP {status})"


def is_server(spec: str) -> bool:
    return spec.startswith(("ws://", "wss://"))


def labels_for(specs: list[str]) -> list[str]:
    """Short, unique labels: the pack directory's name or the server address."""
    from pathlib import Path  # noqa: PLC0415

    base = [spec if is_server(spec) else (Path(spec).name or spec) for spec in specs]
    return [b if base.count(b) == 1 else f"{b}#{i}" for i, b in enumerate(base)]


def open_policy(spec: str, target: str, label: str, api_key: str | None = None) -> ChunkPolicy:
    if is_server(spec):
        return WebsocketPolicy(spec, label, api_key=api_key)
    return PackPolicy(spec, target, label)


@dataclass(frozen=True)
class PolicyOpener:
    """The default `PolicyFactory`: picklable (worker processes and Ray actors build their own
    policies with it) and carrying the server key, which it never shows in its repr."""

    api_key: str | None = field(default=None, repr=False)

    def __call__(self, spec: str, target: str, label: str) -> ChunkPolicy:
        return open_policy(spec, target, label, api_key=self.api_key)
