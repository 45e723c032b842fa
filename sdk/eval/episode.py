"""One closed-loop episode, openpi's LIBERO loop: settle, then observe -> infer -> execute the
first `replan_steps` actions -> observe again, until success or the step budget.

The first policy drives. Every further policy ("probe") is asked for a chunk on the same
observation with the same noise, never executed: how far its chunk sits from the driver's along
the driver's own trajectory (action divergence) is the open-loop half of a pack comparison.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import conventions as C
from .observation import to_observation
from .plan import EvalSettings, EpisodeSpec
from .policies import ChunkPolicy
from .sim_env import SimEnvironment

FrameSink = Callable[[dict[str, np.ndarray]], None]


@dataclass
class _Divergence:
    chunk_rms: list[float] = field(default_factory=list)
    executed_rms: list[float] = field(default_factory=list)
    paired_noise: bool = True

    def add(self, driver: np.ndarray, probe: np.ndarray, executed: int) -> None:
        rows = min(driver.shape[0], probe.shape[0])
        diff = probe[:rows] - driver[:rows]
        self.chunk_rms.append(float(np.sqrt(np.mean(diff ** 2))))
        self.executed_rms.append(float(np.sqrt(np.mean(diff[:executed] ** 2))))

    def to_dict(self) -> dict[str, Any]:
        c, e = np.asarray(self.chunk_rms), np.asarray(self.executed_rms)
        return {"inferences": int(c.size), "chunk_rms_mean": float(c.mean()) if c.size else None,
                "chunk_rms_max": float(c.max()) if c.size else None,
                "executed_rms_mean": float(e.mean()) if e.size else None, "paired_noise": self.paired_noise}


def latency_summary(values_ms: list[float]) -> dict[str, float | int | None]:
    v = np.asarray(values_ms, dtype=float)
    if not v.size:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {"n": int(v.size), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def _noise(rng: np.random.Generator, shape: tuple[int, ...] | None) -> np.ndarray | None:
    return None if shape is None else rng.standard_normal(shape).astype(np.float32)


def run_episode(env: SimEnvironment, driver: ChunkPolicy, spec: EpisodeSpec, settings: EvalSettings,
                probes: tuple[ChunkPolicy, ...] = (), on_frame: FrameSink | None = None) -> dict[str, Any]:
    """Run one episode; returns the JSON-ready record (without the pack/run fields)."""
    t_start = time.perf_counter()
    raw = env.reset(spec.suite, spec.task_id, spec.init_index, spec.env_seed, settings.resolution)
    if on_frame is not None:
        on_frame(raw)
    rng = spec.noise_rng()
    plan: deque[np.ndarray] = deque()
    latencies: list[float] = []
    divergence = {p.label: _Divergence(paired_noise=p.noise_shape == driver.noise_shape and p.noise_shape is not None)
                  for p in probes}
    wait, budget = settings.num_steps_wait, settings.step_budget
    t, success, actions_sent = 0, False, 0
    while t < budget + wait:
        if t < wait:
            action = C.DUMMY_ACTION  # objects settle; the policy is not asked
        else:
            if not plan:
                obs = to_observation(raw, spec.task, timestamp=t * C.CONTROL_PERIOD_S)
                noise = _noise(rng, driver.noise_shape)
                result = driver.infer(obs, noise)
                latencies.append(result.latency_ms)
                executed = min(settings.replan_steps, result.actions.shape[0])
                for probe in probes:
                    paired = divergence[probe.label].paired_noise
                    other = probe.infer(obs, noise if paired else _noise(rng, probe.noise_shape))
                    divergence[probe.label].add(result.actions, other.actions, executed)
                plan.extend(result.actions[:executed])
            action = plan.popleft()
            actions_sent += 1
        step = env.step(np.asarray(action, dtype=np.float64))
        raw = step.raw
        t += 1
        if on_frame is not None:
            on_frame(raw)
        if step.done and t > wait:
            success = True
            break
    record: dict[str, Any] = {
        "suite": spec.suite, "task_id": spec.task_id, "task": spec.task, "episode": spec.episode,
        "init_index": spec.init_index, "env_seed": spec.env_seed, "seed": spec.seed,
        "success": success, "steps": actions_sent, "env_steps": t, "inferences": len(latencies),
        "latency_ms": latency_summary(latencies), "wall_s": time.perf_counter() - t_start,
        # LIBERO's actions are end-effector deltas for robosuite's OSC controller: vla-edge's safety
        # filter works on joint commands of a configured arm and is not in this loop.
        "filter_interventions": None,
    }
    if probes:
        record["divergence"] = {label: d.to_dict() for label, d in divergence.items()}
    return record
