"""Two option sets of the x86 target (default: fused GELU/GeGLU against ggml's element-wise chain)
in one process, on the same observation and noise.

    python benchmarks/bench_fused_ops.py PACK [--threads N] [--runs N] [--json OUT]
        [--a NAME:key=value,...] [--b NAME:key=value,...]     e.g. --b flash:attention=flash

Runs alternate (a, b, a, ...) so machine drift hits both alike. Prints per-stage p50 for each and
the ratio b / a (> 1: a is faster), plus the rel-L2 between the two chunks (same noise: only float
rounding differs when both compute the same function).
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


def option_set(text: str) -> tuple[str, dict[str, object]]:
    """NAME:key=value,... -> (name, options); 'true'/'false' become booleans."""
    name, _, rest = text.partition(":")
    options: dict[str, object] = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
    return name, options


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", help="pack directory, or demo")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--a", default="fused:", help="NAME:options of the first set (default: the target's defaults)")
    ap.add_argument("--b", default="unfused:unfused_ops=true", help="NAME:options of the second set")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    opts = {} if args.threads is None else {"threads": args.threads}
    pack = resolve_pack(args.pack)
    (a, a_opts), (b, b_opts) = option_set(args.a), option_set(args.b)
    policies = {a: load_policy(pack, target="x86", check="size", **opts, **a_opts),
                b: load_policy(pack, target="x86", check="size", **opts, **b_opts)}
    rng = np.random.default_rng(0)
    obs = random_observation(policies[a].pack, rng)
    noise = rng.standard_normal(policies[a].noise_shape).astype(np.float32)
    chunks = {name: p.infer(obs, noise=noise).actions for name, p in policies.items()}  # warm-up
    times: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in policies}
    for _ in range(args.runs):
        for name, policy in policies.items():
            latency = policy.infer(obs, noise=noise).latency_ms
            for stage in STAGES:
                times[name][stage].append(latency[stage])
    p50 = {name: {s: float(np.percentile(v, 50)) for s, v in st.items()} for name, st in times.items()}
    ratio = {s: p50[b][s] / p50[a][s] for s in STAGES}
    agreement = rel_l2(chunks[a], chunks[b])
    print(f"{policies[a].info.pack_name}: {policies[a].info.backend['threads']} threads, {args.runs} runs each")
    print(f"{'stage':<14}{a + ' p50 ms':>16}{b + ' p50 ms':>16}{b + '/' + a:>16}")
    for s in STAGES:
        print(f"{s:<14}{p50[a][s]:>16.1f}{p50[b][s]:>16.1f}{ratio[s]:>16.2f}")
    print(f"rel-L2 {a} vs {b} chunk: {agreement:.2e}")
    if args.json:
        args.json.write_text(json.dumps({
            "pack": policies[a].info.pack_name, "machine": platform.processor() or platform.machine(),
            "threads": policies[a].info.backend["threads"], "runs": args.runs,
            "options": {a: a_opts, b: b_opts}, "backends": {n: p.info.backend for n, p in policies.items()},
            "p50_ms": p50, f"{b}_over_{a}": ratio, f"rel_l2_{a}_vs_{b}": agreement,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
