"""Run on a machine with an NVIDIA GPU (and many cores): the native core on ggml-CUDA and on the
CPU, checked against the reference on the tiny pack, then timed on a full-size pack.

Usage: python benchmarks/gpu_check.py OUT.json [--full-dir DIR] [--threads N]
Prints a table and writes every number to OUT.json. Needs vla_edge importable with a native
module built with -DVLA_EDGE_CUDA=ON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from vla_edge import load_policy
from vla_edge.families.pi05.synth import synth_pack
from vla_edge.packs.golden import random_observation
from vla_edge.packs.quantize import quantize_pack
from vla_edge.packs.writer import rel_l2
from vla_edge.bench import run_bench


def correctness(tiny: Path) -> dict:
    ref = load_policy(tiny, target="reference")
    out = {}
    for device in ("cpu", "cuda"):
        pol = load_policy(tiny, target="x86", device=device, threads=4)
        rng = np.random.default_rng()
        errs = []
        for _ in range(3):
            obs = random_observation(ref.pack, rng)
            noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
            errs.append(rel_l2(pol.infer(obs, noise=noise).actions, ref.infer(obs, noise=noise).actions))
        out[device] = {"rel_l2_max": max(errs), "backend": pol.info.backend}
    return out


def timing(pack: Path, device: str, threads: int, runs: int) -> dict:
    t0 = time.perf_counter()
    pol = load_policy(pack, target="x86", device=device, threads=threads, check="size")
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    obs = random_observation(pol.pack, rng)
    pol.infer(obs)  # warm-up: graphs and buffers
    stages: dict[str, list[float]] = {}
    for _ in range(runs):
        chunk = pol.infer(obs)
        for k, v in chunk.latency_ms.items():
            stages.setdefault(k, []).append(v)
    summary = {k: {"p50": statistics.median(v), "max": max(v)} for k, v in stages.items()
               if not k.startswith("expert_step_")}
    return {"device": device, "threads": threads, "load_s": load_s, "runs": runs, "stages_ms": summary,
            "backend": pol.info.backend,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def gpu_name() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return f"{name}, driver {pynvml.nvmlSystemGetDriverVersion()}"
    except Exception as exc:  # noqa: BLE001 - the report says why instead
        return f"unknown ({exc})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--full-dir", default="/tmp/vla_full")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--recipe", default=None, help="also quantise the full pack with this recipe and time it")
    ap.add_argument("--skip-f16", action="store_true", help="do not time the F16 full pack")
    args = ap.parse_args()
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "gpu": gpu_name()}}
    tiny = Path("/tmp/vla_tiny")
    if not tiny.exists():
        synth_pack(tiny, size="tiny", seed=0)
    result["tiny_correctness"] = correctness(tiny)
    print(json.dumps(result["tiny_correctness"], indent=1), flush=True)
    full = Path(args.full_dir)
    if not full.exists():
        t0 = time.perf_counter()
        synth_pack(full, size="full", seed=0)
        result["full_synth_s"] = time.perf_counter() - t0
    if not args.skip_f16:
        result["full_f16"] = [timing(full, "cuda", args.threads, args.runs), timing(full, "cpu", args.threads, args.runs)]
        print(json.dumps(result["full_f16"], indent=1), flush=True)
    if args.recipe:
        quantized = full.parent / f"{full.name}-{args.recipe}"
        if not quantized.exists():
            t0 = time.perf_counter()
            quantize_pack(full, args.recipe, quantized)
            result["quantize_s"] = time.perf_counter() - t0
        result[f"full_{args.recipe}_cuda"] = timing(quantized, "cuda", args.threads, args.runs)
        print(json.dumps(result[f"full_{args.recipe}_cuda"], indent=1), flush=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
        bench = run_bench(quantized, target="x86", threads=args.threads, runs=args.runs, warmup=1, reference=False)
        result[f"full_{args.recipe}_cpu_bench"] = {**bench.data, "goals": bench.goals}
        print(json.dumps(bench.goals, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
