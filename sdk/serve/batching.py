"""Running the scheduler's passes on a Policy: one request per pass, or a batch where the
Policy can run several observations in one forward pass.

Why the batch path is an interface and not a loop: "many robots per GPU" pays off only when the
target runs N observations through the model in *one* pass (one weight read for N robots). A loop
of single passes behind a batch-shaped API would add waiting and gain nothing, so the server
refuses `max_batch > 1` for a Policy that cannot batch instead of pretending. The native ggml core
batches (targets x86 and cuda); the reference, onnx and TensorRT-engine paths do not
(docs/serve.md, "Batching").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, ObservationError
from ..types import ActionChunk, Observation
from .messages import reply
from .scheduler import Job


@runtime_checkable
class BatchPolicy(Protocol):
    """A Policy whose target runs several observations in one forward pass. An object may also
    carry `batches: bool`; False means it has the method but its target cannot batch (Policy on
    the reference target), and the server then refuses max_batch > 1."""

    def infer_batch(self, requests: Sequence[tuple[Observation, np.ndarray]]) -> Sequence[ActionChunk | Exception]:
        """One chunk per (observation, noise), equal to `infer` on each alone within the target's
        tolerance; an observation the Policy refuses gets its ObservationError in its place
        (the others are still served); a failure of the target itself raises."""


@dataclass(frozen=True)
class Batching:
    """max_batch: requests (from different connections) per forward pass; wait_ms: how long a
    pass may wait for more connections to have work once the first request is there."""

    max_batch: int = 1
    wait_ms: float = 2.0

    def check(self, policy: Any) -> None:
        if self.max_batch < 1 or self.wait_ms < 0:
            raise ConfigError("--max-batch / --batch-wait-ms", f"need max_batch >= 1 and wait_ms >= 0, got "
                                                               f"{self.max_batch} and {self.wait_ms}")
        if self.max_batch > 1 and not (isinstance(policy, BatchPolicy) and getattr(policy, "batches", True)):
            target = getattr(getattr(policy, "info", None), "target", "?")
            raise ConfigError("--max-batch", f"target '{target}' cannot run several observations in one forward pass "
                                             "(the native targets x86 and cuda can; see docs/serve.md, Batching); serve "
                                             "with --max-batch 1: requests are then served one pass each, round-robin")


class PolicyRunner:
    """The scheduler's `run_batch` for a Policy. Runs on the inference thread only."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.served = 0  # chunks produced

    def _infer(self, jobs: Sequence[Job]) -> Sequence[ActionChunk | Exception]:
        if len(jobs) > 1:
            return self.policy.infer_batch([job.payload for job in jobs])
        obs, noise = jobs[0].payload
        try:
            return [self.policy.infer(obs, noise)]
        except ObservationError as exc:  # the request's fault: the connection stays open
            return [exc]

    def __call__(self, jobs: Sequence[Job]) -> list[dict[str, Any] | Exception]:
        t0 = time.perf_counter()
        chunks = self._infer(jobs)
        infer_ms = (time.perf_counter() - t0) * 1e3
        if len(chunks) != len(jobs):
            raise RuntimeError(f"infer_batch returned {len(chunks)} chunks for {len(jobs)} requests")
        replies: list[dict[str, Any] | Exception] = []
        for job, chunk in zip(jobs, chunks):
            if isinstance(chunk, Exception):
                replies.append(chunk)
            else:
                self.served += 1
                replies.append(reply(chunk, infer_ms, job.queue_ms, batch_size=len(jobs)))
        return replies
