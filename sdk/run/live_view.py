"""`vla-edge run --view`: stream a run to rerun (the viewer lerobot users already have).

Why a queue and a thread: logging images to a viewer costs milliseconds and can block on a slow
socket, and the control tick must never wait for it. The control thread (ticks) and the inference
thread (observations) only `put_nowait` into a bounded queue; when the viewer falls behind, items
are dropped and counted (the run summary says how many), never waited for. One daemon thread
turns them into rerun entities:

  cameras/<name>                    the images the policy saw (on the inference thread's timeline)
  joints/<joint>/{commanded,filtered,actual}   scalars per control tick
  filter/state, filter/interventions           text logs: state changes and intervention codes
  loop/{tick_ms,late_ms,velocity_scale}        scalars per control tick

Destination: `spawn` (start a local viewer), `rerun+http://HOST:PORT/proxy` (a viewer or
`rerun --serve` already running), or a path ending in `.rrd` (a recording to open later).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..types import Observation

_QUEUE = 512  # ~4 s of ticks at 125 Hz: a short viewer stall loses nothing


def _rerun():
    try:
        import rerun as rr  # noqa: PLC0415 - optional extra, imported only with --view
    except ImportError as exc:
        raise ConfigError("--view", f"the live view needs the rerun SDK: pip install 'vla-edge[view]' ({exc})") from None
    return rr


class LiveView:
    """Streams ticks and observations of one run to rerun off the control thread."""

    def __init__(self, destination: str, joints: list[str], run_name: str):
        rr = _rerun()
        self._rr = rr
        self.destination = destination
        self.joints = list(joints)
        self.dropped = 0
        self.logged = 0
        self._rec = rr.RecordingStream("vla-edge", recording_id=run_name)
        if destination == "spawn":
            self._rec.spawn()
        elif "://" in destination:
            self._rec.connect_grpc(destination)
        elif destination.endswith(".rrd"):
            path = Path(destination)
            if not path.parent.is_dir():
                raise ConfigError("--view", f"folder {path.parent} for the recording does not exist")
            self._rec.save(str(path))
        else:
            raise ConfigError("--view", f"expected 'spawn', a rerun+http:// address or a path ending in .rrd, "
                                        f"got {destination!r}")
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=_QUEUE)
        self._last_filter: str | None = None
        self.t0: float | None = None  # the loop's start time: observations go on the ticks' run_time
        self._thread = threading.Thread(target=self._drain, name="vla-edge-live-view", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side (never blocks)

    def start(self, t0: float) -> None:
        self.t0 = t0

    def tick(self, record: dict[str, Any]) -> None:
        self._offer(("tick", record))

    def observation(self, obs: Observation) -> None:
        self._offer(("obs", obs))

    def _offer(self, item: tuple[str, Any]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    # ------------------------------------------------------------------ viewer side

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._log(*item)
                self.logged += 1
            except Exception:  # noqa: BLE001 - a viewer problem must not end the run; it is counted
                self.dropped += 1

    def _log(self, kind: str, payload: Any) -> None:
        rr, rec = self._rr, self._rec
        if kind == "obs":
            t0 = self.t0 if self.t0 is not None else payload.timestamp
            rec.set_time("run_time", duration=max(0.0, float(payload.timestamp - t0)))
            for name, image in payload.cameras.items():
                rec.log(f"cameras/{name}", rr.Image(image))
            return
        t = payload
        rec.set_time("tick", sequence=int(t["i"]))
        rec.set_time("run_time", duration=float(t["t"]))
        for series in ("commanded", "filtered", "actual"):
            values = t.get(series)
            if values is None:
                continue
            for joint, v in zip(self.joints, values):
                rec.log(f"joints/{joint}/{series}", rr.Scalars(float(v)))
        for key in ("tick_ms", "late_ms", "velocity_scale"):
            rec.log(f"loop/{key}", rr.Scalars(float(t[key])))
        if t["filter"] != self._last_filter:
            self._last_filter = t["filter"]
            rec.log("filter/state", rr.TextLog(f"filter {t['filter']}", level="INFO" if t["filter"] == "running" else "WARN"))
        for iv in t.get("interventions") or []:
            rec.log("filter/interventions", rr.TextLog(f"{iv.get('code')}: {iv.get('detail', '')}", level="WARN"))

    def close(self, timeout_s: float = 10.0) -> None:
        """Let the viewer thread log what is queued (bounded wait), then flush the stream."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)
        self._rec.flush()
        if self.destination.endswith(".rrd"):
            self._rec.disconnect()
