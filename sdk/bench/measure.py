"""Time a pack on a target: per-stage latency after warm-up, load time, memory, and the ratios
against the reference target, ggml's matmul ceiling and the pack size — all in one run."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from ..errors import ConfigError
from ..packs.golden import random_observation
from ..policy import load_policy

# The reference target runs a full-size pack at minutes per call; above this much weight data it
# is skipped (with the reason printed) unless asked for explicitly.
REFERENCE_AUTO_LIMIT_BYTES = 1 << 30
RSS_GOAL_FACTOR, RSS_GOAL_SLACK_BYTES = 1.15, 300 * 10**6
CEILING_GOAL = 0.85


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "max": float(max(values)), "mean": float(statistics.fmean(values))}


def _time_runs(policy: Any, obs: Any, noise: np.ndarray, runs: int) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {}
    for _ in range(runs):
        for stage, ms in policy.infer(obs, noise=noise).latency_ms.items():
            stages.setdefault(stage, []).append(ms)
    return {stage: _stats(v) for stage, v in stages.items()}


@dataclass
class BenchResult:
    data: dict[str, Any] = field(default_factory=dict)
    goals: list[tuple[str, bool | None, str]] = field(default_factory=list)  # (goal, met?, detail)


def run_bench(pack_dir: str | Path, target: str = "auto", threads: int | None = None, runs: int = 10,
              warmup: int = 2, reference: bool | None = None, ceiling_reps: int = 3, seed: int = 0,
              target_options: dict[str, Any] | None = None) -> BenchResult:
    if runs < 1 or warmup < 0:
        raise ConfigError("--runs/--warmup", f"expected runs >= 1 and warmup >= 0, got {runs} and {warmup}")
    rss_before_load = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    opts = dict(target_options or {})
    if threads is not None:
        opts["threads"] = threads
    policy = load_policy(pack_dir, target=target, seed=seed, check="size", **opts)
    load_s = time.perf_counter() - t0
    target = policy.target  # what "auto" resolved to
    pack = policy.pack
    rng = np.random.default_rng(seed)
    obs = random_observation(pack, rng)
    noise = rng.standard_normal(policy.noise_shape).astype(np.float32)
    for _ in range(warmup):
        policy.infer(obs, noise=noise)
    backend_warm = policy.backend_status()
    rss_warm = psutil.Process().memory_info().rss
    stages = _time_runs(policy, obs, noise, runs)
    rss_after = psutil.Process().memory_info().rss
    peak_rss = _peak_rss_bytes()
    backend_after = policy.backend_status()
    m = pack.manifest
    weights_bytes = m.files.weights.size
    pack_bytes = sum(e.size for e in policy.pack.file_entries().values())
    result = BenchResult()
    d = result.data
    d["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus_usable": len(os.sched_getaffinity(0)), "memory_bytes": psutil.virtual_memory().total}
    d["pack"] = {"dir": str(pack.dir), "name": m.name, "recipe": m.quantization.recipe,
                 "bits_per_weight": m.quantization.bits_per_weight, "weights_bytes": weights_bytes,
                 "pack_bytes": pack_bytes, "variant": getattr(pack.config, "variant", None)}
    d["target"] = {"name": target, "chosen_because": policy.target_reason, "backend": backend_after}
    d["runs"], d["warmup"] = runs, warmup
    d["load_s"] = load_s
    d["latency_ms"] = stages
    d["memory"] = {"rss_before_load_bytes": rss_before_load, "rss_after_warmup_bytes": rss_warm,
                   "rss_after_runs_bytes": rss_after, "peak_rss_bytes": peak_rss,
                   "peak_rss_over_pack": peak_rss / pack_bytes}
    model_ms = sum(stages[s]["p50"] for s in ("vision", "prefix", "expert_total") if s in stages)
    d["model_p50_ms"] = model_ms

    steady = {k: (backend_warm.get(k), backend_after.get(k)) for k in ("graph_builds", "compute_buffer_bytes")
              if k in backend_after}
    d["steady_state"] = {"before_after": steady, "rss_growth_bytes": rss_after - rss_warm}
    if steady:
        unchanged = all(a == b for a, b in steady.values())
        result.goals.append(("no allocation in the steady state", unchanged,
                             f"graph builds / compute buffer unchanged over {runs} runs: {unchanged}; "
                             f"RSS growth {(rss_after - rss_warm) / 1e6:+.1f} MB"))
    goal_rss = weights_bytes * RSS_GOAL_FACTOR + RSS_GOAL_SLACK_BYTES
    result.goals.append(("peak RSS <= pack x 1.15 + 300 MB", peak_rss <= goal_rss,
                         f"{peak_rss / 1e9:.2f} GB vs {goal_rss / 1e9:.2f} GB (includes the Python interpreter)"))

    if target != "reference":
        d["ceiling"] = _ceiling(policy, obs, noise, backend_after, ceiling_reps)
        if d["ceiling"]:
            ratio = d["ceiling"]["seconds"] * 1e3 / model_ms
            d["ceiling"]["pipeline_over_ceiling"] = ratio
            result.goals.append((f"throughput >= {CEILING_GOAL} x ggml matmul", ratio >= CEILING_GOAL,
                                 f"{ratio:.2f} (ggml matmul alone: {d['ceiling']['seconds'] * 1e3:.1f} ms; "
                                 f"pipeline model time p50 {model_ms:.1f} ms)"))
        d["reference"] = _reference(pack_dir, obs, noise, runs, reference, weights_bytes, stages)
    return result


def _ceiling(policy: Any, obs: Any, noise: np.ndarray, backend: dict[str, Any], reps: int) -> dict[str, Any] | None:
    if policy.pack.manifest.family != "pi05" or backend.get("implementation") != "ggml":
        return None
    from ..families.pi05.workload import matmul_workload
    from .ceiling import matmul_ceiling

    inputs = policy.pack.family.preprocessor(policy.pack)(obs, noise)
    uses = matmul_workload(policy.pack.config, len(inputs.images), len(inputs.tokens), inputs.num_steps)
    return matmul_ceiling(policy.pack.weights, uses, int(backend.get("threads", 1)), reps)


def _reference(pack_dir: str | Path, obs: Any, noise: np.ndarray, runs: int, wanted: bool | None,
               weights_bytes: int, stages: dict[str, dict[str, float]]) -> dict[str, Any]:
    if wanted is None:
        wanted = weights_bytes <= REFERENCE_AUTO_LIMIT_BYTES
        if not wanted:
            return {"skipped": f"weights are {weights_bytes / 1e9:.1f} GB: the NumPy reference would take minutes "
                               "per call (pass --reference to run it anyway)"}
    if not wanted:
        return {"skipped": "--no-reference"}
    ref = load_policy(pack_dir, target="reference", check="size")
    ref.infer(obs, noise=noise)
    ref_stages = _time_runs(ref, obs, noise, max(1, min(runs, 5)))
    return {"latency_ms": ref_stages,
            "speedup_total_p50": ref_stages["total"]["p50"] / stages["total"]["p50"]}
