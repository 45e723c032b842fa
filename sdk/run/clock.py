"""Injectable time for the run loop, so tests and fast simulation run deterministically.

Real runs use `MonotonicClock` (inference in its own thread, ticks paced by wall time). A clock
with `realtime = False` makes the loop run inference inline and model its latency instead, so the
same loop code runs in milliseconds and gives the same result every time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    realtime: bool

    def now(self) -> float:
        """Seconds in the time.monotonic() domain (states, observations and chunks share it)."""
        ...

    def sleep_until(self, t: float) -> None:
        """Block (or advance simulated time) until `t`; returns at once if `t` has passed."""
        ...


class MonotonicClock:
    """Wall-clock time; sleep_until sleeps."""

    realtime = True

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class ManualClock:
    """Simulated time that only moves when the loop sleeps (or a test calls `advance`)."""

    realtime = False

    def __init__(self, start: float = 1000.0):
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance(self, dt: float) -> None:
        self._t += max(0.0, float(dt))

    def sleep_until(self, t: float) -> None:
        self._t = max(self._t, float(t))


class SimStepClock:
    """Sim time of a `realtime: false` simulator as the clock: sleeping steps the simulation.

    In live mode each command already advances the sim by one control period, so only the
    remainder (usually none) is stepped; in shadow mode the clock steps it every tick."""

    realtime = False

    def __init__(self, robot, period_s: float):
        self._robot = robot
        self._period = period_s

    def now(self) -> float:
        return float(self._robot.clock())

    def sleep_until(self, t: float) -> None:
        periods = int(round((t - self.now()) / self._period))
        if periods > 0:
            self._robot.step(periods)
