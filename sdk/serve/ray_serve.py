"""A pack behind Ray Serve: beyond one GPU or one machine without a load balancer of our own.

Why Ray Serve: it already places replicas on a cluster's GPUs (`num_replicas`, `num_gpus` per
replica, autoscaling), routes requests to the least busy replica and restarts failed ones; every
replica here is one `Policy`, exactly what `vla-edge serve` runs. Two ways in, both served by each
replica through the same request parsing and reply as `vla-edge serve` (messages.py, wire.py):

- the openpi websocket protocol at `/` (metadata on connect, msgpack-numpy observation in, chunk
  out), so `openpi_client.WebsocketClientPolicy` and `vla-edge eval --pack ws://...` work
  unchanged; a connection stays on one replica and has its own noise generator (seeded like
  `vla-edge serve --seed`, restarted by the reset controls);
- `POST /infer` with one msgpack-numpy observation (`Content-Type: application/msgpack`), reply
  the same msgpack map; `GET /metadata`; `GET /healthz`. Without `noise` in the request the
  replica's own generator draws it (which replica answers is Ray's choice): send `noise` to
  reproduce a chunk.

The API key (openpi's `Authorization: Api-Key <key>`) is checked on every request and websocket
handshake (HTTP 401 / close 1008). No safety filter here either: see docs/serve.md.

Entry points: `vla-edge serve --ray-serve` (cli/serve_cmd.py), Ray's own
`serve run vla_edge.serve.ray_serve:build_app pack=... target=...`, or `application(...)` with
`ray.serve.run` from Python. Ray is the optional extra `ray` (`pip install 'vla-edge[ray]'`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ObservationError, VlaEdgeError
from .access import ApiKey, load_api_key
from .messages import RESETTING_CONTROLS, KeyMap, control_of, control_seed, reply, to_observation

RAY_EXTRA = "pip install 'vla-edge[ray]'"
MSGPACK = "application/msgpack"

try:
    from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
    from ray import serve
except ImportError as _exc:  # named at import: every entry point goes through this module
    raise ConfigError("--ray-serve", f"needs Ray Serve, an optional extra: {RAY_EXTRA} ({_exc})") from _exc


@dataclass(frozen=True)
class ReplicaConfig:
    """What every replica needs to load and serve the pack (picklable: Ray ships it)."""

    pack: str
    target: str = "auto"
    seed: int | None = None
    keys: KeyMap = field(default_factory=KeyMap)
    default_prompt: str | None = None
    api_key: ApiKey | None = None


class _Replica:
    """One Policy and the bookkeeping around it; the FastAPI handlers below call into it."""

    def __init__(self, config: ReplicaConfig):
        from ..packs.demo import resolve_pack  # noqa: PLC0415
        from ..policy import load_policy  # noqa: PLC0415
        from .server import metadata  # noqa: PLC0415

        self.config = config
        self.policy = load_policy(resolve_pack(config.pack), target=config.target, seed=config.seed)
        self.prompt = config.default_prompt if config.default_prompt is not None else \
            self.policy.pack.manifest.default_prompt
        self.noise_shape = tuple(self.policy.noise_shape)
        self.metadata = {**metadata(self.policy, config.keys), "engine": "ray-serve"}
        self._lock = threading.Lock()  # a Policy is not thread-safe: one forward pass at a time per replica
        self.rng = self.new_rng(None)  # /infer without noise: this replica's draws

    def new_rng(self, seed: int | None) -> np.random.Generator:
        return np.random.default_rng(seed if seed is not None else self.config.seed)

    def authorised(self, authorization: list[str]) -> bool:
        key = self.config.api_key
        return key is None or (len(authorization) == 1 and key.accepts(authorization[0]))

    async def infer(self, message: Any, rng: np.random.Generator) -> dict[str, Any]:
        """One observation -> the reply map; ObservationError names what was wrong."""
        arrived = time.perf_counter()
        obs, noise = to_observation(message, self.config.keys, self.prompt, self.noise_shape)

        def run() -> tuple[Any, float, float]:
            with self._lock:
                start = time.perf_counter()
                drawn = noise if noise is not None else rng.standard_normal(self.noise_shape).astype(np.float32)
                chunk = self.policy.infer(obs, noise=drawn)
                return chunk, (time.perf_counter() - start) * 1e3, (start - arrived) * 1e3

        chunk, infer_ms, queue_ms = await asyncio.to_thread(run)
        return reply(chunk, infer_ms, queue_ms)


def _ingress(config: ReplicaConfig) -> FastAPI:
    """The FastAPI app of one replica (built in the replica, around its own Policy)."""
    from . import wire  # noqa: PLC0415

    app = FastAPI(title="vla-edge policy (Ray Serve)", docs_url=None, redoc_url=None, openapi_url=None)
    replica = _Replica(config)
    unauthorised = {"status_code": 401, "headers": {"WWW-Authenticate": "Api-Key"},
                    "content": "401 Unauthorized: send the header 'Authorization: Api-Key <key>'\n"}

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("OK\n", media_type="text/plain")

    @app.get("/metadata")
    async def get_metadata(request: Request) -> Response:
        if not replica.authorised(request.headers.getlist("authorization")):
            return Response(media_type="text/plain", **unauthorised)
        return Response(wire.packb(replica.metadata), media_type=MSGPACK)

    @app.post("/infer")
    async def infer(request: Request) -> Response:
        if not replica.authorised(request.headers.getlist("authorization")):
            return Response(media_type="text/plain", **unauthorised)
        try:
            message = wire.unpackb(await request.body())
            if control_of(message if isinstance(message, dict) else {}) is not None:
                raise ObservationError("__ctrl__", "an observation (controls exist on the websocket only)", "a control")
            return Response(wire.packb(await replica.infer(message, replica.rng)), media_type=MSGPACK)
        except (ObservationError, wire.WireError) as exc:
            return Response(f"error: {exc}\n", status_code=400, media_type="text/plain")
        except VlaEdgeError as exc:
            return Response(f"error: {exc}\n", status_code=422, media_type="text/plain")

    @app.websocket("/")
    async def openpi(ws: WebSocket) -> None:
        if not replica.authorised(ws.headers.getlist("authorization")):
            # HTTP 401 at the handshake, as `vla-edge serve` answers (ASGI's denial-response
            # extension); where the server lacks it, closing before accept refuses it with 403
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(Response(media_type="text/plain", **unauthorised))
            else:
                await ws.close(code=1008, reason="API key required: Authorization: Api-Key <key>")
            return
        await ws.accept()
        await ws.send_bytes(wire.packb(replica.metadata))
        rng = replica.new_rng(None)
        try:
            while True:
                data = await ws.receive_bytes()
                try:
                    message = wire.unpackb(data)
                    control = control_of(message) if isinstance(message, dict) else None
                    if control is not None:
                        if control in RESETTING_CONTROLS:
                            rng = replica.new_rng(control_seed(message, control))
                        await ws.send_bytes(wire.packb({"ok": True}))
                        continue
                    await ws.send_bytes(wire.packb(await replica.infer(message, rng)))
                except (ObservationError, wire.WireError) as exc:
                    await ws.send_text(f"error: {exc}")
        except WebSocketDisconnect:
            return

    return app


@serve.deployment(name="vla-edge-policy")
@serve.ingress()  # the app is built per replica, around its own Policy (__serve_build_asgi_app__)
class PolicyDeployment:
    """A Ray Serve deployment: one Policy per replica, behind the routes of `_ingress`."""

    def __init__(self, config: ReplicaConfig):
        self._app = _ingress(config)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app


def application(config: ReplicaConfig, replicas: int = 1, gpus_per_replica: float = 0.0,
                cpus_per_replica: float = 1.0) -> Any:
    """The bound application for `ray.serve.run(application(...))`."""
    if replicas < 1:
        raise ConfigError("--ray-replicas", f"expected >= 1, got {replicas}")
    if gpus_per_replica < 0 or cpus_per_replica < 0:
        raise ConfigError("--ray-gpus/--ray-cpus", "resources per replica cannot be negative")
    deployment = PolicyDeployment.options(num_replicas=replicas, max_ongoing_requests=8,
                                          ray_actor_options={"num_gpus": gpus_per_replica,
                                                             "num_cpus": cpus_per_replica})
    return deployment.bind(config)


def _number(args: dict[str, str], name: str, kind: type, default: Any) -> Any:
    if name not in args:
        return default
    try:
        return kind(args[name])
    except ValueError as exc:
        raise ConfigError(name, f"expected {kind.__name__}, got {args[name]!r}") from exc


def build_app(args: dict[str, str]) -> Any:
    """Ray's application builder, for `serve run vla_edge.serve.ray_serve:build_app pack=P target=T
    [images=agentview=observation/image,wrist=observation/wrist_image] [state_key=K] [prompt_key=K]
    [prompt=TEXT] [seed=N] [replicas=N] [gpus=G] [cpus=C] [api_key_file=PATH]`. The key may also come
    from $VLA_EDGE_API_KEY of the process that runs `serve run`."""
    known = {"pack", "target", "images", "state_key", "prompt_key", "prompt", "seed", "replicas", "gpus", "cpus",
             "api_key_file"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"serve run argument(s) {unknown}", f"expected some of {sorted(known)}")
    if not args.get("pack"):
        raise ConfigError("pack", "give the pack directory: serve run vla_edge.serve.ray_serve:build_app pack=PATH")
    images = [spec for spec in args.get("images", "").split(",") if spec]
    keys = KeyMap.parse(images, args.get("state_key", "observation/state"), args.get("prompt_key", "prompt"))
    key_file = args.get("api_key_file")
    config = ReplicaConfig(pack=args["pack"], target=args.get("target", "auto"), seed=_number(args, "seed", int, None),
                           keys=keys, default_prompt=args.get("prompt"),
                           api_key=load_api_key(key_file=None if key_file is None else Path(key_file)))
    return application(config, replicas=_number(args, "replicas", int, 1), gpus_per_replica=_number(args, "gpus", float, 0.0),
                       cpus_per_replica=_number(args, "cpus", float, 1.0))


APP_NAME = "vla-edge"


def serve_until_interrupted(config: ReplicaConfig, *, host: str, port: int, address: str = "local", replicas: int = 1,
                            gpus_per_replica: float = 0.0, tls_cert: Path | None = None, tls_key: Path | None = None,
                            on_ready: Any = print) -> None:
    """`vla-edge serve --ray-serve`: join (or start) a Ray cluster, deploy the pack as the Serve
    application 'vla-edge' on HOST:PORT, block until Ctrl-C, then delete the application (and stop
    the Ray instance if this process started it). Serve's HTTP options apply only when Serve is not
    already running on the cluster (Ray's rule): then the running proxy's address is used."""
    import ray  # noqa: PLC0415

    application_ = application(config, replicas=replicas, gpus_per_replica=gpus_per_replica)
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False)
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError: Ray names the cause
        raise ConfigError(f"--ray-address {address}", f"cannot start or join a Ray cluster: {exc}") from exc
    try:
        http: dict[str, Any] = {"host": host, "port": port}
        if tls_cert is not None and tls_key is not None:
            http.update(ssl_certfile=str(tls_cert), ssl_keyfile=str(tls_key))
        serve.start(http_options=http)
        serve.run(application_, name=APP_NAME, route_prefix="/")
        on_ready()
        while True:
            time.sleep(0.5)
    finally:
        try:
            serve.delete(APP_NAME)
        finally:
            ray.shutdown()
