"""Counters the loop keeps while it runs, turned into summary.json at the end.

Kept behind four calls (tick, chunk, event, summary) so the run loop does not care whether these
numbers come from here or from the health module's RunMetrics recorder.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


class LoopStats:
    def __init__(self) -> None:
        self.ticks = 0
        self.sent = 0
        self.held = 0
        self.no_target = 0
        self.interventions: Counter[str] = Counter()
        self.ticks_with_intervention = 0
        self.tick_ms: list[float] = []
        self.chunks = 0
        self.chunks_rejected = 0
        self.rows_dropped = 0
        self.latency_ms: list[float] = []
        self.chunk_age_ms: list[float] = []
        self.events: Counter[str] = Counter()
        self.health_ticks: Counter[str] = Counter()
        self.max_abs_filter_delta = 0.0  # largest |filtered - commanded| seen (rad / m)

    def tick(self, target: np.ndarray | None, command: np.ndarray | None, sent: bool, held: bool,
             codes: tuple[str, ...], tick_ms: float, health: str, filter_state: str | None = None) -> None:
        self.ticks += 1
        self.sent += int(sent)
        self.held += int(held)
        self.no_target += int(target is None)
        self.interventions.update(codes)
        self.ticks_with_intervention += int(bool(codes))
        self.tick_ms.append(tick_ms)
        self.health_ticks[health] += 1
        if target is not None and command is not None:
            self.max_abs_filter_delta = max(self.max_abs_filter_delta, float(np.max(np.abs(command - target))))

    def chunk(self, accepted: bool, latency_ms: float, age_ms: float, rows_dropped: int) -> None:
        self.chunks += 1
        self.chunks_rejected += int(not accepted)
        self.rows_dropped += rows_dropped
        self.latency_ms.append(latency_ms)
        self.chunk_age_ms.append(age_ms)

    def event(self, kind: str) -> None:
        self.events[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """Cheap numbers for the status line."""
        return {
            "ticks": self.ticks, "sent": self.sent, "chunks": self.chunks,
            "inference_p50_ms": _pct(self.latency_ms[-50:], 50),
            "interventions": self.ticks_with_intervention, "held": self.held,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks,
            "commands_sent": self.sent,
            "ticks_held": self.held,
            "ticks_without_target": self.no_target,
            "ticks_with_intervention": self.ticks_with_intervention,
            "interventions": dict(self.interventions),
            "max_abs_filter_delta": self.max_abs_filter_delta,
            "tick_ms": {"p50": _pct(self.tick_ms, 50), "p99": _pct(self.tick_ms, 99),
                        "max": max(self.tick_ms) if self.tick_ms else None},
            "chunks": {"received": self.chunks, "rejected": self.chunks_rejected, "rows_dropped_as_past": self.rows_dropped},
            "inference_latency_ms": {"p50": _pct(self.latency_ms, 50), "p95": _pct(self.latency_ms, 95),
                                     "max": max(self.latency_ms) if self.latency_ms else None},
            "chunk_age_at_arrival_ms": {"p50": _pct(self.chunk_age_ms, 50), "max": max(self.chunk_age_ms) if self.chunk_age_ms else None},
            "events": dict(self.events),
            "ticks_by_health_state": dict(self.health_ticks),
        }
