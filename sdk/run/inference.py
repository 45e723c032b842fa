"""The producer side of the run: observe -> policy.infer -> hand the chunk to the control loop.

Why two workers with one timing rule: on a real robot inference must not block the control
loop, so it runs in its own thread (`ThreadedInference`). In simulated time (tests, fast sim) a
thread would make results depend on the host's scheduler, so `InlineInference` runs the policy
in the loop's thread and makes the chunk available only at capture time + the latency the
chunk reports (`latency_ms['total']`), which is what the thread would have produced.

Timing rule (both): a new inference starts `replan_s / inference_rate_scale` after the previous
one started (never more often than the previous one finishes). Health lowering the rate scale
means fewer inferences, so more of each chunk is executed. The scale is read again while
waiting, so a pause (scale 0 in health critical) ends as soon as the scale comes back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from ..types import ActionChunk, Observation

ObserveFn = Callable[[], Observation]
InferFn = Callable[[Observation], ActionChunk]
RateFn = Callable[[], float]


@dataclass(frozen=True)
class Delivery:
    chunk: ActionChunk
    started: float  # clock time the observation was requested
    finished: float  # clock time the chunk became available


class InferenceFailed(Exception):
    """Carries the policy's exception from the worker to the control loop."""


def _interval(replan_s: float, rate_scale: float) -> float:
    return replan_s / max(min(float(rate_scale), 1.0), 1e-3)


class InlineInference:
    """Deterministic, for simulated clocks: infer in the caller's thread, deliver after its latency."""

    def __init__(self, observe: ObserveFn, infer: InferFn, clock, replan_s: float, rate: RateFn,
                 latency_s: float | None = None):
        self._observe, self._infer, self._clock, self._replan, self._rate = observe, infer, clock, replan_s, rate
        self._latency_s = latency_s  # fixed modelled latency (reproducible runs); None = as measured
        self._pending: Delivery | None = None
        self._running = False
        self._last_start: float | None = None
        self._not_before = 0.0  # the previous chunk's delivery time
        self.started = 0

    def start(self) -> None:
        self._running, self._last_start, self._not_before = True, None, self._clock.now()

    def _due(self) -> float:
        if self._last_start is None:
            return self._not_before
        return max(self._not_before, self._last_start + _interval(self._replan, self._rate()))

    def poll(self) -> Delivery | None:
        now = self._clock.now()
        if self._pending is not None:
            if now < self._pending.finished:
                return None
            out, self._pending = self._pending, None
            self._not_before = max(self._not_before, out.finished)
            return out
        if self._running and now >= self._due():
            self.started += 1
            self._last_start = now
            obs = self._observe()
            chunk = self._infer(obs)
            latency = self._latency_s if self._latency_s is not None else float(chunk.latency_ms.get("total", 0.0)) / 1e3
            self._pending = Delivery(chunk, now, now + latency)
            return self.poll()
        return None

    def stop(self) -> None:
        self._running = False


class ThreadedInference:
    """Real time: a daemon thread keeps the latest chunk in a one-slot mailbox."""

    def __init__(self, observe: ObserveFn, infer: InferFn, clock, replan_s: float, rate: RateFn):
        self._observe, self._infer, self._clock, self._replan, self._rate = observe, infer, clock, replan_s, rate
        self._lock = threading.Lock()
        self._slot: Delivery | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vla-edge-inference", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_start: float | None = None
        while not self._stop.is_set():
            if last_start is not None:
                wait = last_start + _interval(self._replan, self._rate()) - self._clock.now()
                if wait > 0:  # re-read the rate at least every 50 ms: a paused worker resumes promptly
                    self._stop.wait(min(wait, 0.05))
                    continue
            t0 = last_start = self._clock.now()
            try:
                self.started += 1
                chunk = self._infer(self._observe())
            except BaseException as exc:  # noqa: BLE001 - handed to the control loop, which stops
                with self._lock:
                    self._error = exc
                return
            with self._lock:
                self._slot = Delivery(chunk, t0, self._clock.now())

    def poll(self) -> Delivery | None:
        with self._lock:
            if self._error is not None:
                raise InferenceFailed(str(self._error)) from self._error
            out, self._slot = self._slot, None
            return out

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Ask the thread to end; False if a stalled inference is still running (it is a daemon
        thread and its result will be ignored)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            return not self._thread.is_alive()
        return True
