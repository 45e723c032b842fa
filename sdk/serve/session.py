"""One websocket connection of `vla-edge serve`: read requests, queue them fairly, write the
replies in request order, enforce the per-connection limits, and log who/when/how many/why closed.

Why a reader and a writer: a client may send its next request before the previous reply
(pipelining); the reader keeps taking requests (up to `max_in_flight` unanswered, after which it
stops reading, so TCP pushes back on the client rather than the server buffering without end)
while the writer sends each reply as soon as it and every earlier one are ready. Replies keep
request order, which is what openpi's client (send, then recv) relies on.

Noise: each connection has its own generator, seeded with the server's --seed (a control message
may choose another seed), so the chunks one robot gets do not depend on other robots' traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, ObservationError
from . import wire
from .messages import RESETTING_CONTROLS, KeyMap, control_of, control_seed, to_observation
from .scheduler import ClientQueue, FairScheduler

log = logging.getLogger("vla_edge.serve")


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits. idle_timeout_s None: never close a quiet connection (openpi's
    client does not reconnect, so a robot pausing between episodes would lose its server)."""

    max_message_bytes: int = 64 * 2**20  # a few uncompressed camera frames; bigger is a client bug
    max_in_flight: int = 2  # requests sent but not yet answered
    idle_timeout_s: float | None = None
    max_connections: int = 16  # checked at the handshake

    def __post_init__(self) -> None:
        for name, option in (("max_message_bytes", "--max-message-mb"), ("max_in_flight", "--max-in-flight"),
                             ("max_connections", "--max-connections"), ("idle_timeout_s", "--idle-timeout")):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{option} (ConnectionLimits.{name})", f"must be positive, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return {"max_message_bytes": self.max_message_bytes, "max_in_flight": self.max_in_flight,
                "idle_timeout_s": self.idle_timeout_s, "max_connections": self.max_connections}


@dataclass(frozen=True)
class RequestFormat:
    """What every connection needs to turn a message into (observation, noise)."""

    keys: KeyMap
    default_prompt: str | None
    noise_shape: tuple[int, ...]
    seed: int | None


def peer_name(ws: Any) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def _close_description(ws: Any) -> str:
    protocol = ws.protocol
    rcvd, sent = protocol.close_rcvd, protocol.close_sent
    if rcvd is not None and (sent is None or protocol.close_rcvd_then_sent):
        return f"client closed ({rcvd.code}{' ' + rcvd.reason if rcvd.reason else ''})"
    if sent is not None:
        return f"server closed ({sent.code}{' ' + sent.reason if sent.reason else ''})"
    return "connection lost (no close frame)"


class Session:
    def __init__(self, ws: Any, fmt: RequestFormat, scheduler: FairScheduler, limits: ConnectionLimits):
        self.ws, self.fmt, self.scheduler, self.limits = ws, fmt, scheduler, limits
        self.peer = peer_name(ws)
        self.client = ClientQueue(self.peer)
        self.rng = np.random.default_rng(fmt.seed)
        self.slots = asyncio.Semaphore(limits.max_in_flight)
        self.replies: asyncio.Queue[asyncio.Future] = asyncio.Queue()
        self.in_flight = 0
        self.last_activity = self.opened = time.monotonic()
        self.chunks = self.errors = 0
        self.reason: str | None = None  # set when the server closes on purpose

    # ------------------------------------------------------------------ requests

    def _now(self, answer: Any) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        done.set_result(answer)
        return done

    def _request(self, raw: bytes | str, received: float) -> asyncio.Future:
        """The future reply to one frame: a reply map, or text for an error the client caused."""
        if isinstance(raw, str):
            return self._now("error: requests are binary msgpack maps, got a text frame")
        try:
            message = wire.unpackb(raw)
            control = control_of(message) if isinstance(message, dict) else None
            if control is not None:
                if control in RESETTING_CONTROLS:
                    seed = control_seed(message, control)
                    self.rng = np.random.default_rng(self.fmt.seed if seed is None else seed)
                else:
                    control_seed(message, control)  # refuses a seed on a non-resetting control
                return self._now({"ok": True})
            obs, noise = to_observation(message, self.fmt.keys, self.fmt.default_prompt, self.fmt.noise_shape)
        except (ObservationError, wire.WireError) as exc:
            return self._now(f"error: {exc}")
        if noise is None:  # drawn now, in request order: the sequence is this connection's alone
            noise = self.rng.standard_normal(self.fmt.noise_shape).astype(np.float32)
        return self.scheduler.submit(self.client, (obs, noise), received)

    async def _next_frame(self) -> bytes | str | None:
        """The next frame, or None once the connection has been idle (nothing received, nothing
        owed) for idle_timeout_s."""
        idle = self.limits.idle_timeout_s
        while True:
            wait = None if idle is None else max(self.last_activity + idle - time.monotonic(), 0.0)
            try:
                return await asyncio.wait_for(self.ws.recv(), wait)
            except TimeoutError:
                if self.in_flight:  # a reply is still owed: the client is waiting, not idle
                    self.last_activity = time.monotonic()
                elif time.monotonic() - self.last_activity >= idle:
                    return None

    async def _read(self) -> None:
        while True:
            await self.slots.acquire()  # at most max_in_flight unanswered: then stop reading
            raw = await self._next_frame()
            if raw is None:
                self.reason = f"idle for {self.limits.idle_timeout_s:g} s"
                await self.ws.close(1000, "idle timeout")
                return
            received = self.last_activity = time.monotonic()
            self.in_flight += 1
            await self.replies.put(self._request(raw, received))

    async def _write(self) -> None:
        while True:
            pending = await self.replies.get()
            try:
                answer = await pending
            except ObservationError as exc:  # the Policy refused the observation: say why, stay open
                answer = f"error: {exc}"
            except Exception as exc:  # noqa: BLE001 - the policy failed: its state is unknown
                log.error("inference failed for %s: %s: %s", self.peer, type(exc).__name__, exc, exc_info=exc)
                self.reason = f"inference failed ({type(exc).__name__}: {exc})"
                await self.ws.send(f"error: {self.reason}; closing")
                await self.ws.close(1011, "inference failed")
                return
            if isinstance(answer, str):
                self.errors += 1
                await self.ws.send(answer)
            else:
                self.chunks += "actions" in answer
                await self.ws.send(wire.packb(answer))
            self.in_flight -= 1
            self.last_activity = time.monotonic()
            self.slots.release()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, metadata: bytes, open_connections: int) -> None:
        """Serve the connection until either side closes it; log how it ended."""
        from websockets.exceptions import ConnectionClosed

        log.info("client %s connected (%d connection(s) open)", self.peer, open_connections)
        tasks: list[asyncio.Task] = []
        try:
            await self.ws.send(metadata)
            tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None and not isinstance(task.exception(), ConnectionClosed):
                    raise task.exception()
        except ConnectionClosed:
            pass
        except Exception as exc:
            self.reason = f"server error ({type(exc).__name__}: {exc})"
            raise  # websockets logs it and closes with 1011
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.scheduler.drop(self.client)
            reason = self.reason or _close_description(self.ws)
            log.info("client %s closed after %.1f s, %d chunk(s), %d error reply(ies): %s",
                     self.peer, time.monotonic() - self.opened, self.chunks, self.errors, reason)
