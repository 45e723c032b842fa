"""HealthGovernor: device health -> the run loop's OperatingLimits, with hysteresis.

States nominal -> warm -> throttled -> critical. Going up is immediate (the first sample that
calls for it). Coming down needs every reading below its threshold minus `hysteresis_c` (and the
flags that caused the state gone) for `recover_hold_s` without interruption. Critical only comes
down to nominal: new chunks stay refused until the device is fully cool again.

Sensors are read off the control thread: a background thread samples every `sample_period_s`
and `current_limits()` only takes a lock, so a slow sysfs or NVML read never stalls a tick. If
sampling stops (hung driver), samples go stale and the state rises to `no_sensor_state`. Tests
use `background=False` with the run's simulated clock: sampling then happens inside
`current_limits()`, rate-limited to one read per `sample_period_s` of that clock.

Every transition is logged (logger `vla_edge.health`, WARNING) with its cause and kept in
`transitions`; the run loop also writes it to events.jsonl.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .assess import Assessment, Assessor
from .config import STATES, HealthConfig, parse_health_config
from .limits import OperatingLimits
from .sample import HealthSample, Monitor, merge_samples

log = logging.getLogger("vla_edge.health")
log.addHandler(logging.NullHandler())  # a library logs; the application (or the CLI) decides what is shown


@dataclass(frozen=True)
class Transition:
    t: float
    from_state: str
    to_state: str
    cause: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "from": self.from_state, "to": self.to_state, "cause": self.cause}


class HealthGovernor:
    def __init__(self, monitors: Sequence[Monitor], config: HealthConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, background: bool = True,
                 notes: Sequence[str] = ()):
        self.monitors = list(monitors)
        self.config = config or HealthConfig()
        self.clock = clock
        self.background = background
        self.notes = list(notes)
        self.transitions: list[Transition] = []
        self.last_sample: HealthSample | None = None
        self._assessor = Assessor(self.config)
        self._level = 0
        self._causes: tuple[str, ...] = ()
        self._calm_since: float | None = None
        self._calm_target: int | None = None
        self._sampled_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the run loop's interface

    @property
    def state(self) -> str:
        return STATES[self._level]

    @property
    def recovery_wait_s(self) -> float:
        """How long the run loop waits, stopped in critical, for a return to nominal."""
        return self.config.critical.resume_wait_s

    def current_limits(self) -> OperatingLimits:
        now = self.clock()
        if self._sampled_at is None:
            self.poll()  # the first call reads synchronously, so the first tick has real limits
            if self.background:
                self._start_thread()
        elif not self.background and now - self._sampled_at >= self.config.sample_period_s - 1e-9:  # summed sim periods
            self.poll()
        with self._lock:
            if self._sampled_at is not None and now - self._sampled_at > self.config.stale_after_s:
                self._stale(now)
            return self._limits()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for m in self.monitors:
            closer = getattr(m, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception as exc:  # noqa: BLE001 - closing a sensor must not fail a run's cleanup
                    log.warning("closing health monitor %s failed: %s", m.name, exc)

    # ------------------------------------------------------------------ sampling

    def sample(self) -> HealthSample:
        """Read every monitor once; a monitor that raises counts as wholly unavailable."""
        now = self.clock()
        parts = []
        for m in self.monitors:
            try:
                parts.append(m.sample(now))
            except Exception as exc:  # noqa: BLE001 - a broken monitor fails closed, never crashes the loop
                parts.append(HealthSample(now, (m.name,), unavailable={f"monitor:{m.name}": f"failed: {exc}"}))
        return merge_samples(parts, now)

    def poll(self) -> HealthSample:
        s = self.sample()
        with self._lock:
            up, down = self._assessor.assess(s)
            self.last_sample = s
            self._sampled_at = s.timestamp
            self._step(up, down, s.timestamp)
        return s

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vla-edge-health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.sample_period_s):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - keep sampling; staleness covers a dead thread anyway
                log.warning("health sampling failed: %s", exc)

    # ------------------------------------------------------------------ state machine

    def _step(self, up: Assessment, down: Assessment, now: float) -> None:
        if up.level > self._level:
            self._calm_since = self._calm_target = None
            self._move(up.level, up.causes, now)
            return
        if up.level == self._level and up.level > 0:
            self._causes = up.causes  # same state, current cause
        target = down.level if down.level < self._level else None
        if target is not None and self._level == 3 and target != 0:
            target = None  # critical comes down only to nominal
        if target is None:
            self._calm_since = self._calm_target = None
            return
        if self._calm_target != target:
            self._calm_since, self._calm_target = now, target
        held = now - self._calm_since
        if held >= self.config.recover_hold_s - 1e-9:
            cause = (f"recovered: readings below the {STATES[target + 1]} thresholds - {self.config.hysteresis_c:g} C "
                     f"hysteresis, and no flag above {STATES[target]}, for {held:.1f} s")
            if down.causes:
                cause += "; still " + "; ".join(down.causes)
            self._calm_since = self._calm_target = None
            self._move(target, (cause,), now)

    def _move(self, level: int, causes: tuple[str, ...], now: float) -> None:
        cause = "; ".join(causes) or "no cause recorded"
        tr = Transition(now, STATES[self._level], STATES[level], cause)
        self.transitions.append(tr)
        log.warning("health %s -> %s: %s", tr.from_state, tr.to_state, cause)
        self._level, self._causes = level, causes

    def _stale(self, now: float) -> None:
        floor = STATES.index(self.config.no_sensor_state)
        if self._level < floor:
            age = now - (self._sampled_at or now)
            self._move(floor, (f"health samples stale: last completed {age:.1f} s ago",), now)

    def _limits(self) -> OperatingLimits:
        cfg, state = self.config, STATES[self._level]
        reason = "; ".join(self._causes)
        if state == "nominal":
            return OperatingLimits("nominal", 1.0, 1.0, True, reason)
        if state == "critical":
            return OperatingLimits("critical", cfg.critical.inference_rate_scale, cfg.critical.velocity_scale, False, reason)
        action = cfg.warm if state == "warm" else cfg.throttled
        return OperatingLimits(state, action.inference_rate_scale, action.velocity_scale, True, reason)

    def describe(self) -> dict[str, Any]:
        """For config.yaml: what is monitored and with which settings."""
        return {"provider": "health governor", "monitors": [m.name for m in self.monitors],
                "selection": self.notes, "config": self.config.model_dump(mode="json")}


def from_run_config(config: dict[str, Any] | None, target: str | None = None,
                    probe: Any = None) -> HealthGovernor | None:
    """The run YAML's `health:` section -> a governor with monitors picked for this machine and
    target (None when `enabled: false`)."""
    from .select import select_monitors  # noqa: PLC0415 - keeps limits-only imports light

    cfg = parse_health_config(config)
    if not cfg.enabled:
        return None
    monitors, notes = select_monitors(target, cfg.monitors, probe)
    return HealthGovernor(monitors, cfg, notes=notes)
