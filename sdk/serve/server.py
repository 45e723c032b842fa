"""`vla-edge serve`: a policy behind a websocket, speaking openpi's protocol.

Why openpi's protocol: robot-side code written against `openpi_client.WebsocketClientPolicy`
(LIBERO, ALOHA, DROID examples and many labs' own stacks) can switch to a quantised pack on an
edge target without changes. The protocol: on connect the server sends one msgpack map of
metadata; then every binary request is an observation map and gets one binary reply map with
`actions`. A request that cannot be served gets a text frame instead (openpi clients raise it as
an error) - never zeros, never an old chunk. A bad observation keeps the connection open; a
failure of the policy itself closes it (code 1011), since its state is unknown.

This server only predicts. Nothing it returns passes vla-edge's safety filter: the client drives
the robot and owns joint limits, watchdogs and the e-stop (`vla-edge run` is the path that
includes the filter). The metadata says so, so a client can log it.

On a network: it listens on 127.0.0.1 unless told otherwise; with an API key, a handshake
without `Authorization: Api-Key <key>` gets HTTP 401 before anything about the pack is sent
(access.py); TLS gives wss://. One Policy serves every connection, one forward pass at a time,
connections taking turns (scheduler.py), so a client that floods requests cannot starve a robot;
the event loop stays free for other clients and for `GET /healthz`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
import threading
from typing import Any

from ..errors import VlaEdgeError
from ..policy import Policy
from . import wire
from .access import ApiKey, exposure_warnings
from .batching import Batching, PolicyRunner
from .messages import KeyMap
from .scheduler import FairScheduler
from .session import ConnectionLimits, RequestFormat, Session, peer_name

log = logging.getLogger("vla_edge.serve")
SAFETY_NOTE = "predictions only: vla-edge's safety filter is not in this path; the client owns limits and e-stop"


def metadata(policy: Policy, keys: KeyMap, limits: ConnectionLimits = ConnectionLimits(),
             batching: Batching = Batching()) -> dict[str, Any]:
    info = policy.info
    return {
        "server": "vla-edge", "protocol": "openpi-websocket/msgpack-numpy",
        "family": info.family, "pack": info.pack_name, "target": info.target, "quant_recipe": info.quant_recipe,
        "horizon": info.horizon, "action_names": list(info.action_names), "action_units": list(info.action_units),
        "state_names": list(info.state_names), "control_period_s": info.control_period_s,
        "cameras": sorted(set(info.cameras.values())), "required_cameras": list(info.required_cameras),
        "noise_shape": list(policy.noise_shape), "flat_keys": {"images": keys.images, "state": keys.state,
                                                               "prompt": keys.prompt},
        "safety": SAFETY_NOTE, "limits": limits.to_dict(), "max_batch": batching.max_batch,
    }


class PolicyServer:
    """Serves `policy` from a background thread (start/stop/wait). api_key None: no
    authentication (then keep host on loopback); tls None: plain ws://."""

    def __init__(self, policy: Policy, keys: KeyMap = KeyMap(), default_prompt: str | None = None,
                 host: str = "127.0.0.1", port: int = 8000, *, api_key: ApiKey | None = None,
                 tls: ssl.SSLContext | None = None, limits: ConnectionLimits = ConnectionLimits(),
                 batching: Batching = Batching()):
        batching.check(policy)
        self.policy, self.keys, self.host, self.port = policy, keys, host, port
        self.api_key, self.tls, self.limits, self.batching = api_key, tls, limits, batching
        prompt = default_prompt if default_prompt is not None else policy.pack.manifest.default_prompt
        # Every connection's noise generator starts from the Policy's seed (see session.py).
        self._format = RequestFormat(keys, prompt, tuple(policy.noise_shape), policy.seed)
        self._metadata = wire.packb(metadata(policy, keys, limits, batching))
        self._runner = PolicyRunner(policy)
        self._sessions: set[Session] = set()
        self._scheduler: FairScheduler | None = None
        self._scheduler_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def served(self) -> int:
        """Chunks sent so far, over all connections."""
        return self._runner.served

    @property
    def scheme(self) -> str:
        return "wss" if self.tls is not None else "ws"

    # ------------------------------------------------------------------ handshake

    def _admit(self, connection, request):
        """Before the websocket handshake: /healthz, then the key, then the connection limit.
        A refusal says only what was wrong with the request - nothing about the pack."""
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        offered = request.headers.get_all("Authorization")
        if self.api_key is not None and not (len(offered) == 1 and self.api_key.accepts(offered[0])):
            why = "no" if not offered else "a wrong"
            log.warning("refused %s: %s API key", peer_name(connection), why)
            response = connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                          "401 Unauthorized: send the header 'Authorization: Api-Key <key>'\n")
            response.headers["WWW-Authenticate"] = "Api-Key"
            return response
        if len(self._sessions) >= self.limits.max_connections:
            log.warning("refused %s: %d connections open (the limit)", peer_name(connection), len(self._sessions))
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "503: too many connections\n")
        return None

    async def _handler(self, ws) -> None:
        assert self._scheduler is not None
        session = Session(ws, self._format, self._scheduler, self.limits)
        self._sessions.add(session)
        try:
            await session.run(self._metadata, len(self._sessions))
        finally:
            self._sessions.discard(session)

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        self._scheduler = FairScheduler(self._runner, self.batching.max_batch, self.batching.wait_ms / 1e3)
        self._scheduler_task = asyncio.get_running_loop().create_task(self._scheduler.run())
        # max_queue=2: websockets buffers at most 2 frames a connection has sent ahead of what
        # the session reads (reading stops at max_in_flight), so a flood waits in TCP, not here.
        self._server = await serve(self._handler, self.host, self.port, compression=None,
                                   max_size=self.limits.max_message_bytes, max_queue=2,
                                   process_request=self._admit, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> int:
        """Serve from a background thread; returns the bound port (port 0 picks a free one)."""
        for warning in exposure_warnings(self.host, self.port, self.api_key is not None, self.tls is not None):
            log.warning("%s", warning)
        ready, failure = threading.Event(), []

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name="vla-edge-serve", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise VlaEdgeError(f"cannot listen on {self.host}:{self.port}: {failure[0]}")
        log.info("listening on %s://%s:%d (%s; API key %s; max %d connection(s), %d request(s) in flight each, "
                 "batch %d)", self.scheme, self.host, self.port, "TLS" if self.tls else "no TLS",
                 f"from {self.api_key.source}" if self.api_key else "none", self.limits.max_connections,
                 self.limits.max_in_flight, self.batching.max_batch)
        return self.port

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return

        async def shutdown() -> None:
            self._server.close()
            await self._server.wait_closed()
            if self._scheduler_task is not None:
                self._scheduler_task.cancel()
                await asyncio.gather(self._scheduler_task, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._scheduler is not None:
            self._scheduler.shutdown()
        self._server = None

    def wait(self) -> None:
        """Block until interrupted (Ctrl-C), then stop."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()
