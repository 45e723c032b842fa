"""Fused GELU/GeGLU (one custom ggml op per tensor) against ggml's element-wise chain, on the
x86 target, in one process, on the same observation and noise.

    python benchmarks/bench_fused_ops.py PACK [--threads N] [--runs N] [--json OUT]

Runs alternate (fused, unfused, fused, ...) so machine drift hits both alike. Prints per-stage
p50 for each and the ratio unfused / fused (> 1: the fused op is faster), plus the rel-L2
between the two chunks (same noise: the only difference is float rounding inside GELU).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from vla_edge.packs.demo import resolve_pack
from vla_edge.packs.golden import random_observation
from vla_edge.packs.writer import rel_l2
from vla_edge.policy import load_policy

STAGES = ("vision", "prefix", "expert_total", "total")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", help="pack directory, or demo")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    opts = {} if args.threads is None else {"threads": args.threads}
    pack = resolve_pack(args.pack)
    policies = {"fused": load_policy(pack, target="x86", check="size", **opts),
                "unfused": load_policy(pack, target="x86", check="size", unfused_ops=True, **opts)}
    assert policies["fused"].info.backend["fused_gelu_ops"] and not policies["unfused"].info.backend["fused_gelu_ops"]
    rng = np.random.default_rng(0)
    obs = random_observation(policies["fused"].pack, rng)
    noise = rng.standard_normal(policies["fused"].noise_shape).astype(np.float32)
    chunks = {name: p.infer(obs, noise=noise).actions for name, p in policies.items()}  # warm-up
    times: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in policies}
    for _ in range(args.runs):
        for name, policy in policies.items():
            latency = policy.infer(obs, noise=noise).latency_ms
            for stage in STAGES:
                times[name][stage].append(latency[stage])
    p50 = {name: {s: float(np.percentile(v, 50)) for s, v in st.items()} for name, st in times.items()}
    ratio = {s: p50["unfused"][s] / p50["fused"][s] for s in STAGES}
    agreement = rel_l2(chunks["fused"], chunks["unfused"])
    print(f"{policies['fused'].info.pack_name}: {policies['fused'].info.backend['threads']} threads, {args.runs} runs each")
    print(f"{'stage':<14}{'fused p50 ms':>14}{'unfused p50 ms':>16}{'unfused/fused':>15}")
    for s in STAGES:
        print(f"{s:<14}{p50['fused'][s]:>14.1f}{p50['unfused'][s]:>16.1f}{ratio[s]:>15.2f}")
    print(f"rel-L2 fused vs unfused chunk: {agreement:.2e}")
    if args.json:
        args.json.write_text(json.dumps({
            "pack": policies["fused"].info.pack_name, "machine": platform.processor() or platform.machine(),
            "threads": policies["fused"].info.backend["threads"], "runs": args.runs, "p50_ms": p50,
            "unfused_over_fused": ratio, "rel_l2_fused_vs_unfused": agreement,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
