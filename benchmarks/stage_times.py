"""Per-stage wall time of the x86 target for the vla_edge (and native build) on PYTHONPATH.

    python benchmarks/stage_times.py PACK LABEL [--threads N] [--runs N]

For comparing two native builds (compile flags, ggml options), which cannot share a process: run
it alternately with each build's PYTHONPATH, several rounds, so machine drift hits both alike;
each line prints the best of --runs calls per stage after one warm-up call.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from vla_edge.packs.demo import resolve_pack
from vla_edge.packs.golden import random_observation
from vla_edge.policy import load_policy

STAGES = ("vision", "prefix", "expert_total", "total")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", help="pack directory, or demo")
    ap.add_argument("label", help="name printed with the result, e.g. the build")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    opts = {} if args.threads is None else {"threads": args.threads}
    policy = load_policy(resolve_pack(args.pack), target="x86", check="size", **opts)
    rng = np.random.default_rng(0)
    obs = random_observation(policy.pack, rng)
    noise = rng.standard_normal(policy.noise_shape).astype(np.float32)
    policy.infer(obs, noise=noise)
    runs = [policy.infer(obs, noise=noise).latency_ms for _ in range(args.runs)]
    best = {s: round(min(r[s] for r in runs), 1) for s in STAGES}
    print(json.dumps({"label": args.label, "threads": policy.info.backend["threads"], "best_ms": best}))


if __name__ == "__main__":
    main()
