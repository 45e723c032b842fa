"""Round-robin scheduling of inference requests across connections, and batch collection.

Why: one Policy (one accelerator) serves every robot, one forward pass at a time. With a single
first-come-first-served queue, a client that sends requests back to back (a bug, a benchmark, or
a hostile peer) puts all of them ahead of a robot that asked once, and the robot's chunk arrives
late. Here every connection has its own queue and the scheduler takes one request per connection
per turn, so a request waits at most for the pass in progress plus one pass for each *other*
connection that has work queued - however many requests those connections have sent.

Batching: a backend that runs several observations in one forward pass is handed up to
`max_batch` requests at once, at most one per connection (so a batch is also a fair turn), after
waiting at most `batch_wait_s` for more connections to have work. Whether a Policy can do that is
its business (`run_batch` below); the scheduler only collects.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    """One request waiting for (or in) a forward pass."""

    client: "ClientQueue"
    payload: Any
    received: float  # time.monotonic() when its frame arrived
    future: asyncio.Future
    started: float | None = None  # time.monotonic() when its pass began (set on the inference thread)

    @property
    def queue_ms(self) -> float:
        return ((self.started or time.monotonic()) - self.received) * 1e3


@dataclass(eq=False)
class ClientQueue:
    """One connection's requests, in the order they arrived (replies keep that order)."""

    name: str
    jobs: deque[Job] = field(default_factory=deque)
    in_pass: bool = False  # a job of this client is in the pass now: it rejoins the ring after it
    closed: bool = False  # the connection is gone: nothing more is run or answered for it


# Runs on the inference thread: one result (or the exception raised for it) per job, in order.
RunBatch = Callable[[Sequence[Job]], Sequence[Any]]


class FairScheduler:
    """Feeds `run_batch` from per-connection queues, round-robin, on one inference thread."""

    def __init__(self, run_batch: RunBatch, max_batch: int = 1, batch_wait_s: float = 0.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if batch_wait_s < 0:
            raise ValueError(f"batch_wait_s must be >= 0, got {batch_wait_s}")
        self._run_batch, self.max_batch, self.batch_wait_s = run_batch, max_batch, batch_wait_s
        self._ring: deque[ClientQueue] = deque()  # clients with queued jobs, in the order they are served
        self._work = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-edge-infer")
        self.batch_sizes: list[int] = []  # one entry per pass (for logs, tests and benchmarks)

    def submit(self, client: ClientQueue, payload: Any, received: float) -> asyncio.Future:
        """Queue one request; the future resolves to run_batch's result for it."""
        job = Job(client, payload, received, asyncio.get_running_loop().create_future())
        client.jobs.append(job)
        if not client.in_pass and client not in self._ring:
            self._ring.append(client)
            self._work.set()
        return job.future

    def drop(self, client: ClientQueue) -> None:
        """The connection is gone: its queued requests are not run."""
        client.closed = True
        while client.jobs:
            client.jobs.popleft().future.cancel()
        if client in self._ring:
            self._ring.remove(client)

    def _take_turns(self, batch: list[Job]) -> None:
        while self._ring and len(batch) < self.max_batch:
            client = self._ring.popleft()
            client.in_pass = True
            batch.append(client.jobs.popleft())

    async def _collect(self) -> list[Job]:
        while not self._ring:
            self._work.clear()
            await self._work.wait()
        batch: list[Job] = []
        self._take_turns(batch)
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.max_batch and (left := deadline - time.monotonic()) > 0:
            self._work.clear()
            try:
                await asyncio.wait_for(self._work.wait(), left)
            except TimeoutError:
                break
            self._take_turns(batch)
        return batch

    def _execute(self, batch: list[Job]) -> Sequence[Any]:
        now = time.monotonic()
        for job in batch:
            job.started = now
        return self._run_batch(batch)

    async def run(self) -> None:
        """The scheduling loop; runs until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self.batch_sizes.append(len(batch))
            try:
                results: Sequence[Any] = await loop.run_in_executor(self._executor, self._execute, batch)
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} requests")
            except Exception as exc:  # noqa: BLE001 - every request of the pass gets the failure
                results = [exc] * len(batch)
            for job, result in zip(batch, results):
                if job.client.closed:
                    job.future.cancel()  # nobody is left to read it
                elif not job.future.done():
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)
                job.client.in_pass = False
                if job.client.jobs and not job.client.closed and job.client not in self._ring:
                    self._ring.append(job.client)  # behind everyone who waited during the pass

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
