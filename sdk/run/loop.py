"""RunLoop: the control loop at the robot's rate, fed by an inference worker, through the filter.

Every tick: read health limits -> read robot state -> take a new chunk if one arrived -> target =
schedule.target_at(the tick's nominal time) -> SafetyFilter.step -> log. The filter is the only thing that can move
the arm; the loop never touches a MotionPort. Watchdogs:
- inference: no chunk for `inference_timeout_s` (scaled by the health rate) -> target None (the
  filter brakes and holds) and an event; the next chunk resumes.
- control: a tick that ends more than half a period after the next tick should have started is
  an overrun (event, counted). In real time a watchdog thread stops the arm (SafetyFilter.stop)
  if no tick starts for `control_timeout_s` (default max(0.25 s, 10 periods)); a live run then
  ends (`safety_stop`), a shadow run logs it and goes on.
Health "critical" (accept_new_chunks False): new chunks are refused, the current one runs out,
the filter brakes to a stop. The run then ends, unless `critical_wait_s` > 0: the arm stays
stopped while the loop waits that long for the provider to accept chunks again; then only
chunks observed after the recovery are taken and the filter resumes from where the arm stands.
Any exception or Ctrl-C ends in filter.stop().
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import VlaEdgeError
from ..health.limits import NOMINAL, LimitsProvider, OperatingLimits
from ..types import Observation
from .cameras import CameraSource, capture
from .inference import InferenceFailed, InlineInference, ThreadedInference
from .mapping import JointMapping
from .rundir import RunDirectory
from .schedule import ActionSchedule
from .stats import LoopStats
from .watchdog import ControlWatchdog

if TYPE_CHECKING:
    from ..robots.base import Robot
    from ..robots.safety import SafetyFilter
    from ..types import ActionChunk
    from .clock import Clock
    from .live_view import LiveView

# A stop caused only by these can be resumed (from the measured position, at rest) when valid
# targets come back: gaps between chunks, the inference watchdog, and policy outputs the filter
# refused (outside the arm's range, non-finite). Anything about the robot's own state (tracking
# error, stale or bad state) or the clock (future target) ends the run: fail closed.
RESUMABLE_CODES = frozenset({"missing_target", "out_of_range_target", "non_finite_target", "bad_target"})
_MAX_REPEATED_EVENTS = 20  # per kind below; summary.json has the full counts
_RATE_LIMITED = frozenset({"control_overrun", "resume", "chunk_rejected"})
_GIL_SWITCH_S = 0.001


class NominalLimits:
    """Used when no health governor is configured."""

    def current_limits(self) -> OperatingLimits:
        return NOMINAL


@dataclass(frozen=True)
class LoopSettings:
    duration_s: float
    prompt: str
    replan_s: float  # seconds between inference starts at full rate
    inference_timeout_s: float  # no chunk for this long (at full rate) -> hold
    blend_s: float = 0.0
    status_every_s: float = 0.5
    simulated_latency_s: float | None = None  # simulated clocks only: fixed inference latency
    control_timeout_s: float | None = None  # real time: no tick for this long -> stop (default max(0.25 s, 10 periods))
    critical_wait_s: float = 0.0  # stopped in health critical: wait this long for recovery (0 = end the run)
    record_obs_every: int = 0  # > 0: store every N-th observation in the run directory (calibration data)


@dataclass(frozen=True)
class RunOutcome:
    reason: str  # "duration" | "interrupted" | "stopped" | "health_critical" | "safety_stop" | "error"
    detail: str
    summary: dict[str, Any]


class RunLoop:
    def __init__(
        self,
        robot: Robot,
        safety: SafetyFilter,
        infer: Callable[[Observation], ActionChunk],
        mapping: JointMapping,
        cameras: dict[str, CameraSource],
        clock: Clock,
        settings: LoopSettings,
        rundir: RunDirectory,
        health: LimitsProvider | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        stats: LoopStats | None = None,
        view: LiveView | None = None,
    ):
        self.robot, self.safety, self.mapping, self.cameras = robot, safety, mapping, cameras
        self.clock, self.settings, self.rundir = clock, settings, rundir
        self.health = health or NominalLimits()
        self.on_status = on_status
        self.period = robot.capabilities.control_period_s
        self.schedule = ActionSchedule(settings.blend_s)
        self.stats = stats if stats is not None else LoopStats()
        self.view = view  # --view: fed with put_nowait only; never waited for
        self.stop_event = threading.Event()
        self._limits = NOMINAL
        rate = lambda: self._limits.inference_rate_scale  # noqa: E731
        if clock.realtime:
            self.worker = ThreadedInference(self._observe, infer, clock, settings.replan_s, rate)
        else:
            self.worker = InlineInference(self._observe, infer, clock, settings.replan_s, rate, settings.simulated_latency_s)
        self.control_watchdog: ControlWatchdog | None = None
        if clock.realtime:
            timeout = settings.control_timeout_s or max(0.25, 10 * self.period)
            self.control_watchdog = ControlWatchdog(timeout, self.safety.stop)
        self._t0 = 0.0
        self._last_chunk_t = 0.0
        self._watchdog = False
        self._hold_codes: set[str] = set()
        self._ending: str | None = None
        self._held_since: float | None = None  # stopped in critical, waiting for recovery
        self._taking_from = float("-inf")  # chunks observed before this (health recovery) are refused
        self._end: tuple[str, str] | None = None
        self._overruns = 0
        self._observed = 0

    # -------------------------------------------------------------- producer side (worker thread)

    def _observe(self) -> Observation:
        images, t_img = capture(self.cameras, self.clock.now)
        state = self.robot.read_state()
        obs = Observation(cameras=images, state=self.mapping.state_for_policy(state.q),
                          prompt=self.settings.prompt, timestamp=min(t_img, float(state.timestamp)))
        every = self.settings.record_obs_every
        if every and self._observed % every == 0:
            self.rundir.observation(self._observed, obs)
        self._observed += 1
        if self.view is not None:
            self.view.observation(obs)
        return obs

    # -------------------------------------------------------------- control side

    def _event(self, kind: str, **fields: Any) -> None:
        """Log an event; repetitive kinds are written the first few times and counted always."""
        self.stats.event(kind)
        if kind in _RATE_LIMITED and self.stats.events[kind] > _MAX_REPEATED_EVENTS:
            return
        self.rundir.event(kind, round(self.clock.now() - self._t0, 6), **fields)

    def run(self) -> RunOutcome:
        """Run until the duration ends, stop_event is set, or a stop condition; always stops the
        filter and writes the summary. KeyboardInterrupt is re-raised after the stop."""
        clock, s = self.clock, self.settings
        self._t0 = self._last_chunk_t = clock.now()
        if self.view is not None:
            self.view.start(self._t0)
        self._event("start", shadow=bool(self.safety.shadow), period_s=self.period)
        reason, detail, raised = "duration", "", None
        next_tick, next_status = self._t0, self._t0
        # The inference thread (NumPy reference: thousands of small ops) shares the GIL with this
        # loop; a 1 ms switch interval (default 5 ms) bounds how long a tick waits for it.
        switch_interval = sys.getswitchinterval()
        if clock.realtime:
            sys.setswitchinterval(min(switch_interval, _GIL_SWITCH_S))
        self.worker.start()
        if self.control_watchdog is not None:
            self.control_watchdog.start()
        try:
            while True:
                if self.control_watchdog is not None:
                    self.control_watchdog.beat()
                    if self.control_watchdog.tripped_after_s is not None:
                        if self._control_stalled():
                            reason, detail = "safety_stop", (
                                f"control loop stalled for {self.control_watchdog.tripped_after_s:.3f} s; arm stopped")
                            break
                now = clock.now()
                if self.stop_event.is_set():
                    reason = "stopped"
                    break
                if now - self._t0 >= s.duration_s - 1e-9:  # sim time sums periods: allow rounding
                    break
                started = time.perf_counter()
                # nominal time: absorbs jitter up to one period; a longer stall uses the real time
                # (the target must not go stale; the loop skips ahead after this tick anyway)
                nominal = min(next_tick, now) if now - next_tick <= self.period else now
                self._tick(now, late_s=now - next_tick, nominal=nominal)
                work_ms = (time.perf_counter() - started) * 1e3
                if self._end is not None:
                    reason, detail = self._end
                    break
                next_tick += self.period
                # Half a period of slack: drivers that pace their own commands (UR servoJ with
                # waitPeriod) block for part of the period, which is not a missed tick.
                if clock.now() > next_tick + 0.5 * self.period:
                    self._overrun(clock.now() - next_tick, work_ms)
                    if clock.now() > next_tick + self.period:
                        next_tick = clock.now()  # skip ahead; a real arm does not wait for us
                if self.on_status is not None and now >= next_status:
                    next_status = now + s.status_every_s
                    self.on_status(self._status(now))
                clock.sleep_until(next_tick)
        except KeyboardInterrupt as exc:
            reason, detail, raised = "interrupted", "Ctrl-C", exc
        except InferenceFailed as exc:
            reason, detail = "error", f"inference failed: {exc}"
            raised = VlaEdgeError(f"inference failed during the run: {exc}")
        except BaseException as exc:  # noqa: BLE001 - every exit path must stop the arm
            reason, detail, raised = "error", f"{type(exc).__name__}: {exc}", exc
        sys.setswitchinterval(switch_interval)
        outcome = self._finish(reason, detail)
        if raised is not None:
            raise raised
        return outcome

    def _tick(self, now: float, late_s: float, nominal: float | None = None) -> None:
        """One control tick. The target is the schedule at the tick's *nominal* time (start +
        k periods, when the tick is at most one period late): the filter and the arm's servo both
        assume one period per command, so a tick the host ran a few ms late must not ask for a
        longer step (a late tick followed by a catch-up tick would otherwise look like a velocity
        spike)."""
        t0 = time.perf_counter()
        nominal = now if nominal is None else nominal
        self._update_limits()
        state = self.robot.read_state()  # once: a new chunk fades in from this very reading
        self._take_chunk(now, state)
        target = self.schedule.target_at(nominal)
        target = self._inference_watchdog(now, target)
        if target is not None and self.safety.state == "stopped":
            if not self._try_resume(state):
                return
        limits = self._limits
        result = self.safety.step(target, nominal if target is not None else None, state, limits.velocity_scale)
        if result.state in ("braking", "stopped"):
            self._hold_codes.update(result.codes)
        elif result.state == "running":
            self._hold_codes.clear()
        if result.state == "estopped":
            self._end = ("safety_stop", "emergency stop latched")
        elif self._ending and target is None and result.state == "stopped":
            self._hold_stopped(now)
        tick_ms = (time.perf_counter() - t0) * 1e3
        sent = result.sent and not self.safety.shadow  # shadow: the filter reports what it *would* send
        self.stats.tick(target, result.command, sent, result.held, result.codes, tick_ms, limits.state, result.state)
        record = {
            "i": self.stats.ticks - 1, "t": now - self._t0, "commanded": target, "filtered": result.command,
            "sent": sent, "held": result.held, "actual": state.q, "filter": result.state,
            "interventions": result.to_dict()["interventions"],  # code, detail, joints
            "chunk": self.schedule.chunk_id, "health": limits.state, "velocity_scale": limits.velocity_scale,
            "tick_ms": tick_ms, "late_ms": max(0.0, late_s) * 1e3,
        }
        self.rundir.tick(record)
        if self.view is not None:
            self.view.tick(record)

    def _update_limits(self) -> None:
        try:
            limits = self.health.current_limits()
        except Exception as exc:  # noqa: BLE001 - a broken health source fails closed
            limits = OperatingLimits("critical", 0.0, 0.0, False, f"health provider failed: {exc}")
        if limits.state != self._limits.state:
            self._event("health", state=limits.state, reason=limits.reason,
                        velocity_scale=limits.velocity_scale, inference_rate_scale=limits.inference_rate_scale)
        self._limits = limits
        if not limits.accept_new_chunks and self._ending is None:
            self._ending = "health_critical"
            self._event("finishing_segment", reason=limits.reason)
        elif limits.accept_new_chunks and self._ending == "health_critical":
            self._recovered()

    def _hold_stopped(self, now: float) -> None:
        """Critical and the arm has stopped: end the run, or wait for recovery up to critical_wait_s."""
        wait = self.settings.critical_wait_s
        if self._held_since is None:
            self._held_since = now
            if wait > 0:
                self._event("health_hold", reason=self._limits.reason, wait_s=wait)
        if now - self._held_since >= wait:
            self._end = (self._ending, self._limits.reason + (f" (no recovery within {wait:g} s)" if wait else ""))

    def _recovered(self) -> None:
        """The provider accepts chunks again: take only chunks observed from now on, restart the
        inference watchdog's timer; the filter resumes (from the measured position) on the next target."""
        now = self.clock.now()
        self._event("health_recovered", state=self._limits.state, reason=self._limits.reason,
                    stopped_for_s=None if self._held_since is None else now - self._held_since)
        self._ending, self._held_since = None, None
        self._taking_from = self._last_chunk_t = now
        self._hold_codes.add("missing_target")  # the stop was ours, at rest: resumable

    def _take_chunk(self, now: float, state) -> None:
        delivery = self.worker.poll()
        if delivery is None:
            return
        chunk = delivery.chunk
        latency = float(chunk.latency_ms.get("total", (delivery.finished - delivery.started) * 1e3))
        if self._ending is not None:
            self._event("chunk_refused", reason=self._ending)
            return
        if delivery.started < self._taking_from:
            self._event("chunk_refused", reason="observed before the health recovery")
            return
        result = self.schedule.update(self.mapping.actions_for_robot(chunk.actions), chunk.timestamp,
                                      chunk.control_period_s, now, hold=self._held_at(state))
        age_ms = (now - chunk.timestamp) * 1e3
        self.stats.chunk(result.accepted, latency, age_ms, result.dropped_rows)
        self.rundir.chunk({"t": now - self._t0, "id": self.schedule.chunk_id if result.accepted else None,
                           "accepted": result.accepted, "reason": None if result.accepted else result.reason,
                           "latency_ms": latency, "age_ms": age_ms, "rows": int(len(chunk.actions)),
                           "rows_dropped": result.dropped_rows})
        self._last_chunk_t = now
        if not result.accepted:
            self._event("chunk_rejected", reason=result.reason, latency_ms=latency)

    def _held_at(self, state):
        """Where the arm is held while no chunk runs: the last command, or, when the filter is
        stopped (it resumes from the measured joints), the measured joints."""
        if self.safety.state == "running" and self.safety.last_command is not None:
            return self.safety.last_command
        return state.q

    def _inference_watchdog(self, now: float, target):
        scale = max(min(self._limits.inference_rate_scale, 1.0), 1e-3)
        late = now - self._last_chunk_t > self.settings.inference_timeout_s / scale
        if late and not self._watchdog and self._ending is None:
            self._event("inference_watchdog", since_last_chunk_s=now - self._last_chunk_t)
        elif not late and self._watchdog:
            self._event("inference_recovered")
        self._watchdog = late and self._ending is None
        return None if self._watchdog else target

    def _try_resume(self, state) -> bool:
        if self._hold_codes <= RESUMABLE_CODES:
            try:
                self.safety.resume(state)
            except VlaEdgeError as exc:  # e.g. stale state: stay stopped, end the run
                self._end = ("safety_stop", f"cannot resume: {exc}")
                self._event("safety_stop", codes=sorted(self._hold_codes), detail=str(exc))
                return False
            self._event("resume", after=sorted(self._hold_codes))
            self._hold_codes.clear()
            return True
        self._end = ("safety_stop", f"filter stopped on {sorted(self._hold_codes)}")
        self._event("safety_stop", codes=sorted(self._hold_codes))
        return False

    def _control_stalled(self) -> bool:
        """The watchdog tripped (and stopped the filter). Live: end the run. Shadow: nothing can
        move, so log it, re-arm the watchdog and let the filter resume on the next target."""
        stalled = self.control_watchdog.tripped_after_s
        self._event("control_watchdog", stalled_s=stalled)
        if not self.safety.shadow:
            return True
        self._hold_codes.add("missing_target")
        self.control_watchdog.stop()
        self.control_watchdog = ControlWatchdog(self.control_watchdog.timeout_s, self.safety.stop)
        self.control_watchdog.start()
        return False

    def _overrun(self, by_s: float, work_ms: float) -> None:
        self._overruns += 1
        self._event("control_overrun", late_ms=by_s * 1e3, work_ms=work_ms)

    def _status(self, now: float) -> dict[str, Any]:
        return {**self.stats.snapshot(), "t": now - self._t0, "health": self._limits.state,
                "health_reason": self._limits.reason,
                "filter": self.safety.state, "watchdog": self._watchdog, "shadow": bool(self.safety.shadow)}

    def _finish(self, reason: str, detail: str) -> RunOutcome:
        try:
            self.safety.stop()
        finally:
            if self.control_watchdog is not None:
                self.control_watchdog.stop()
            stopped_cleanly = self.worker.stop()
            self._event("end", reason=reason, detail=detail, inference_thread_ended=stopped_cleanly is not False)
            summary = {
                "end_reason": reason, "detail": detail, "shadow": bool(self.safety.shadow),
                "duration_s": self.clock.now() - self._t0, "control_period_s": self.period,
                "control_overruns": self._overruns, "inferences_started": self.worker.started,
                **self.stats.summary(),
                "cameras": {name: {"kind": src.kind, **src.stats.to_dict()} for name, src in self.cameras.items()},
            }
            if self.view is not None:  # ticks/observations the viewer fell too far behind to take
                summary["live_view"] = {"destination": self.view.destination, "dropped": self.view.dropped}
            summary["diagnosis"] = _diagnose(summary)
            self.rundir.write_summary(summary)
        return RunOutcome(reason, detail, summary)


def _diagnose(summary: dict[str, Any]) -> list[str]:
    """Plain-language reasons a run did not execute the policy, for the summary and the CLI."""
    notes = []
    chunks = summary["chunks"]
    if chunks["received"] and chunks["rejected"] == chunks["received"]:
        notes.append(
            "every chunk arrived after its last row was due (inference + capture latency "
            f"p50 {summary['chunk_age_at_arrival_ms']['p50']:.0f} ms is longer than the chunk): "
            "the arm only held; use a faster target or a pack with a longer action horizon"
        )
    elif summary["ticks"] and summary["ticks_without_target"] > 0.5 * summary["ticks"]:
        notes.append(f"{summary['ticks_without_target']} of {summary['ticks']} ticks had no target (held)")
    if summary["control_overruns"]:
        notes.append(f"{summary['control_overruns']} control ticks overran their period")
    return notes
