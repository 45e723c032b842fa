"""Control-deadline watchdog: stops the arm from another thread if the control loop stalls.

Why a thread: a control loop blocked in a driver call, a camera read or a long GC pause cannot
notice its own stall. The loop calls `beat()` every tick; if no beat arrives for `timeout_s`,
`on_trip` runs once (the run loop passes SafetyFilter.stop, which is thread-safe). Real time only:
under a simulated clock nothing can stall between ticks.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class ControlWatchdog:
    def __init__(self, timeout_s: float, on_trip: Callable[[], None]):
        self.timeout_s = timeout_s
        self._on_trip = on_trip
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tripped_after_s: float | None = None  # set once, when it trips

    def beat(self) -> None:
        self._last = time.monotonic()

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="vla-edge-control-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.timeout_s / 4):
            age = time.monotonic() - self._last
            if age > self.timeout_s:
                self.tripped_after_s = age
                try:
                    self._on_trip()
                finally:
                    return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
