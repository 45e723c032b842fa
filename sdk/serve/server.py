"""`vla-edge serve`: a policy behind a websocket, speaking openpi's protocol.

Why openpi's protocol: robot-side code written against `openpi_client.WebsocketClientPolicy`
(LIBERO, ALOHA, DROID examples and many labs' own stacks) can switch to a quantised pack on an
edge target without changes. The protocol: on connect the server sends one msgpack map of
metadata; then every binary request is an observation map and gets one binary reply map with
`actions`. A request that cannot be served gets a text frame instead (openpi clients raise it as
an error) — never zeros, never an old chunk. A bad observation keeps the connection open; a
failure of the policy itself closes it (code 1011), since its state is unknown.

This server only predicts. Nothing it returns passes vla-edge's safety filter: the client drives
the robot and owns joint limits, watchdogs and the e-stop (`vla-edge run` is the path that
includes the filter). The metadata says so, so a client can log it.

One Policy serves every connection, one inference at a time (a Policy is not thread-safe); the
event loop stays free for other clients and for `GET /healthz`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import ObservationError, VlaEdgeError
from ..policy import Policy
from . import wire
from .messages import RESETTING_CONTROLS, KeyMap, control_of, reply, to_observation

log = logging.getLogger("vla_edge.serve")
MAX_MESSAGE_BYTES = 64 * 2**20  # a few uncompressed camera frames; bigger is a client bug
SAFETY_NOTE = "predictions only: vla-edge's safety filter is not in this path; the client owns limits and e-stop"


def metadata(policy: Policy, keys: KeyMap) -> dict[str, Any]:
    info = policy.info
    return {
        "server": "vla-edge", "protocol": "openpi-websocket/msgpack-numpy",
        "family": info.family, "pack": info.pack_name, "target": info.target, "quant_recipe": info.quant_recipe,
        "horizon": info.horizon, "action_names": list(info.action_names), "action_units": list(info.action_units),
        "state_names": list(info.state_names), "control_period_s": info.control_period_s,
        "cameras": sorted(set(info.cameras.values())), "required_cameras": list(info.required_cameras),
        "noise_shape": list(policy.noise_shape), "flat_keys": {"images": keys.images, "state": keys.state,
                                                               "prompt": keys.prompt},
        "safety": SAFETY_NOTE,
    }


class PolicyServer:
    def __init__(self, policy: Policy, keys: KeyMap = KeyMap(), default_prompt: str | None = None,
                 host: str = "0.0.0.0", port: int = 8000):
        self.policy, self.keys, self.host, self.port = policy, keys, host, port
        self.default_prompt = default_prompt if default_prompt is not None else policy.pack.manifest.default_prompt
        self._metadata = metadata(policy, keys)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-edge-infer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self.served = 0

    # ------------------------------------------------------------------ protocol

    def _health(self, connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    def _serve_one(self, message: Any, received: float) -> dict[str, Any]:
        """Runs on the inference thread: decode -> infer -> reply map."""
        queue_ms = (time.monotonic() - received) * 1e3
        control = control_of(message) if isinstance(message, dict) else None
        if control is not None:
            if control in RESETTING_CONTROLS:
                self.policy.reset()
            return {"ok": True}
        obs, noise = to_observation(message, self.keys, self.default_prompt, tuple(self.policy.noise_shape))
        t0 = time.perf_counter()
        chunk = self.policy.infer(obs, noise)
        self.served += 1
        return reply(chunk, (time.perf_counter() - t0) * 1e3, queue_ms)

    async def _handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        peer = ws.remote_address
        log.info("client %s connected", peer)
        loop = asyncio.get_running_loop()
        try:
            await ws.send(wire.packb(self._metadata))
            async for raw in ws:
                received = time.monotonic()
                if isinstance(raw, str):
                    await ws.send("error: requests are binary msgpack maps, got a text frame")
                    continue
                try:
                    message = wire.unpackb(raw)
                    answer = await loop.run_in_executor(self._executor, self._serve_one, message, received)
                except (ObservationError, wire.WireError) as exc:  # the client's request: say why, stay open
                    await ws.send(f"error: {exc}")
                    continue
                except Exception as exc:  # noqa: BLE001 - the policy failed: its state is unknown
                    log.exception("inference failed for %s", peer)
                    reason = f"error: inference failed ({type(exc).__name__}: {exc}); closing"
                    await ws.send(reason)
                    await ws.close(1011, "inference failed")
                    return
                await ws.send(wire.packb(answer))
        except ConnectionClosed:
            pass
        finally:
            log.info("client %s disconnected", peer)

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        self._server = await serve(self._handler, self.host, self.port, compression=None, max_size=MAX_MESSAGE_BYTES,
                                   process_request=self._health)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> int:
        """Serve from a background thread; returns the bound port (port 0 picks a free one)."""
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
        return self.port

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return

        async def shutdown() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._executor.shutdown(wait=True)

    def wait(self) -> None:
        """Block until interrupted (Ctrl-C), then stop."""
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()
