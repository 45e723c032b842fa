"""The run directory: what happened, readable even if the process dies mid-run.

Layout:  config.yaml   resolved run config (robot config, pack, target, health, loop, mapping)
         ticks.jsonl   one JSON object per control tick
         events.jsonl  watchdog, health, safety and lifecycle events
         chunks.jsonl  one JSON object per action chunk delivered by the inference worker
                       (latency, age at arrival, accepted or why not, rows already in the past)
         summary.json  operational metrics, rewritten atomically (also periodically during the run)
         observations/<n>/  (only with --record-obs N) every N-th observation the policy saw, in
                       the observation-folder layout `vla-edge calibrate --from` reads
Lines are flushed at least every `flush_s` seconds of wall time, so a crash loses at most that.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError


def _plain(value: Any) -> Any:
    """JSON-safe copy: arrays to lists, non-finite floats to null (JSON has no NaN)."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return round(v, 7) if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(_plain(record), separators=(",", ":")) + "\n"


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_run_dir(path: Path) -> Path:
    """Refuse a run directory that would mix two runs' logs (checked before connecting)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError("--run-dir", f"{path} exists and is not an empty directory; choose a new run directory")
    return path


class RunDirectory:
    """Owns the files of one run; `close()` flushes and writes the final summary."""

    def __init__(self, path: Path, flush_s: float = 0.5):
        self.path = check_run_dir(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("--run-dir", f"cannot create {self.path}: {exc}") from exc
        self._ticks = open(self.path / "ticks.jsonl", "w")
        self._events = open(self.path / "events.jsonl", "w")
        self._chunks = open(self.path / "chunks.jsonl", "w")
        self._flush_s = flush_s
        self._last_flush = time.monotonic()
        self.closed = False

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(_plain(config), sort_keys=False))

    def tick(self, record: dict[str, Any]) -> None:
        self._ticks.write(_json_line(record))
        self._maybe_flush()

    def event(self, kind: str, t: float, **fields: Any) -> None:
        self._events.write(_json_line({"t": t, "event": kind, **fields}))
        self._events.flush()

    def chunk(self, record: dict[str, Any]) -> None:
        self._chunks.write(_json_line(record))
        self._chunks.flush()

    def observation(self, index: int, obs: Any) -> None:
        """Store observation number `index` (images as PNG + state.json) for calibration."""
        from vla_edge.calibration.observations import write_observation

        write_observation(self.path / "observations" / f"{index:06d}", obs)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / "summary.json", json.dumps(_plain(summary), indent=1) + "\n")

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= self._flush_s:
            self._ticks.flush()
            self._last_flush = now

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ticks.close()
        self._events.close()
        self._chunks.close()
