"""Writes run directories in the format `vla-edge run` writes, with trajectories whose report
numbers are known by construction (so tests compare against the construction, not the code)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

RATE_HZ = 100.0
DT = 1.0 / RATE_HZ
V_LIMIT = np.array([1.0, 2.0])
A_LIMIT = np.array([10.0, 20.0])
JOINTS = ["shoulder", "elbow"]


@dataclass
class SyntheticRun:
    """A shadow run: the operator moves the arm along `actual`; the policy's command differs
    from it by exactly +-offset on every tick it has one; the filtered track ramps at
    `ramp_share` of the velocity limit (from rest, within the acceleration limit)."""

    ticks: int = 600
    first_target: int = 40  # no target before this tick (waiting for the first chunk)
    gaps: list[tuple[int, int]] = field(default_factory=lambda: [(200, 230), (400, 410)])  # [start, end) without target
    intervention_ticks: tuple[int, ...] = (100, 101, 300)  # velocity_limited on these ticks
    offset: float = 0.03  # |policy - actual| on every tick with a target
    ramp_share: float = 0.5
    planted_jump: int | None = None  # a filtered step of 2x the velocity limit on this tick
    latencies_ms: np.ndarray | None = None
    ages_ms: np.ndarray | None = None
    horizon: int = 10
    policy_period_s: float = 0.05
    seed: int = 0

    def has_target(self) -> np.ndarray:
        mask = np.arange(self.ticks) >= self.first_target
        for start, end in self.gaps:
            mask[start:end] = False
        return mask

    def write(self, path: Path) -> Path:
        rng = np.random.default_rng(self.seed)
        path.mkdir(parents=True)
        t = np.arange(self.ticks) * DT
        actual = np.stack([0.4 * np.sin(0.7 * t), -0.3 + 0.2 * np.cos(1.1 * t)], axis=1)
        signs = rng.choice([-1.0, 1.0], size=actual.shape)
        commanded = actual + signs * self.offset
        # filtered: accelerate at half the acceleration limit up to ramp_share of the velocity limit
        v_target = self.ramp_share * V_LIMIT
        v = np.minimum(np.arange(self.ticks)[:, None] * 0.5 * A_LIMIT * DT, v_target)
        filtered = np.cumsum(v * DT, axis=0)
        if self.planted_jump is not None:
            filtered[self.planted_jump:] += 2.0 * V_LIMIT * DT
        target = self.has_target()
        with open(path / "ticks.jsonl", "w") as f:
            for i in range(self.ticks):
                codes = [{"code": "velocity_limited", "detail": "", "joints": [0]}] if i in self.intervention_ticks else []
                if not target[i]:
                    codes = [{"code": "missing_target", "detail": "no target this tick", "joints": []}]
                f.write(json.dumps({
                    "i": i, "t": round(float(t[i]), 7), "commanded": commanded[i].round(7).tolist() if target[i] else None,
                    "filtered": filtered[i].round(7).tolist(), "sent": False, "held": not target[i],
                    "actual": actual[i].round(7).tolist(), "filter": "running", "interventions": codes,
                    "chunk": None, "health": "nominal", "velocity_scale": 1.0, "tick_ms": 0.2, "late_ms": 0.1}) + "\n")
        latencies = self.latencies_ms if self.latencies_ms is not None else rng.uniform(40, 90, 30)
        ages = self.ages_ms if self.ages_ms is not None else latencies + rng.uniform(5, 15, latencies.size)
        with open(path / "chunks.jsonl", "w") as f:
            for k, (lat, age) in enumerate(zip(latencies, ages)):
                f.write(json.dumps({"t": k * 0.2, "id": k, "accepted": True, "reason": None, "latency_ms": float(lat),
                                    "age_ms": float(age), "rows": self.horizon, "rows_dropped": 1}) + "\n")
        (path / "events.jsonl").write_text(json.dumps({"t": 0.0, "event": "start", "shadow": True, "period_s": DT}) + "\n")
        config = {"mode": "shadow", "target": "reference",
                  "robot": {"name": "arm-sim", "joints": JOINTS, "control_rate_hz": RATE_HZ,
                            "limits": {"velocity": V_LIMIT.tolist(), "acceleration": A_LIMIT.tolist()}},
                  "policy": {"pack_name": "synthetic", "target": "reference", "quant_recipe": "f32",
                             "horizon": self.horizon, "control_period_s": self.policy_period_s},
                  "prompt": "pick up the cube"}
        (path / "config.yaml").write_text(yaml.safe_dump(config))
        return path
