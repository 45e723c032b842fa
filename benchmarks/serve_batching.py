""""Many robots per GPU": batched forward passes against one-at-a-time, same Policy, same run.

    python benchmarks/serve_batching.py PACK [--target x86|cuda] [--clients 1 2 4] [--requests 10]
                                             [--batch-wait-ms 5] [--repeats 5] [--rounds 3] [--json out.json]

Two measurements, both with the one-at-a-time path as the baseline measured beside it:
  model   Policy.infer_batch of B observations (one pass per stage) against B calls of
          Policy.infer, B in --clients: ms per chunk and the ratio (no network, no waiting).
  serve   N robot clients (threads on loopback, each sending its next request after its reply,
          as a robot loop does) against a server with --max-batch max(N) and one with --max-batch 1,
          N in --clients, the two servers taking turns phase by phase so machine load drifts hit
          both (--rounds, order alternating): robot chunks/s, per-client p50/p95 round trip, batch
          sizes seen, the ratios batched / one-at-a-time per round and their median.
Printed and written as JSON (default benchmarks/results/serve_batching_<target>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import _message, _phase  # noqa: E402 - the robot clients of the one-at-a-time benchmark

from vla_edge.packs.demo import resolve_pack  # noqa: E402
from vla_edge.packs.golden import random_observation  # noqa: E402
from vla_edge.policy import load_policy  # noqa: E402
from vla_edge.serve import Batching, ConnectionLimits, PolicyServer  # noqa: E402

PROMPTS = ["pick up the red cube", "open the top drawer and put the bowl inside", "stack the blocks", "wipe"]


def _model(policy, sizes: list[int], repeats: int, rng: np.random.Generator) -> dict:
    """ms per chunk: one infer_batch of B against B single infers, min over `repeats`."""
    out = {}
    for b in sizes:
        requests = [(random_observation(policy.pack, rng, prompt=PROMPTS[i % len(PROMPTS)]),
                     rng.standard_normal(policy.noise_shape).astype(np.float32)) for i in range(b)]
        policy.infer_batch(requests)  # graph build and buffer growth outside the timing
        single, batched = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for obs, noise in requests:
                policy.infer(obs, noise)
            single.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            policy.infer_batch(requests)
            batched.append((time.perf_counter() - t0) * 1e3)
        s, bt = min(single), min(batched)
        out[str(b)] = {"one_at_a_time_ms_per_chunk": round(s / b, 2), "batched_ms_per_chunk": round(bt / b, 2),
                       "batched_pass_ms": round(bt, 2),
                       "throughput_batched_over_one_at_a_time": round(s / bt, 3)}
    return out


def _ratios(one: dict, bat: dict) -> dict:
    return {"throughput_batched_over_one_at_a_time": round(bat["robot_chunks_per_s"] / one["robot_chunks_per_s"], 3),
            "p50_round_trip_batched_over_one_at_a_time": [
                round(b["round_trip_ms"]["p50"] / o["round_trip_ms"]["p50"], 3)
                for b, o in zip(bat["clients"], one["clients"])]}


def _serve(policy, sizes: list[int], requests: int, wait_ms: float, rounds: int, rng: np.random.Generator) -> dict:
    limits = ConnectionLimits(max_connections=max(sizes) + 2)
    servers = {"one_at_a_time": PolicyServer(policy, host="127.0.0.1", port=0, limits=limits),
               "batched": PolicyServer(policy, host="127.0.0.1", port=0, limits=limits,
                                       batching=Batching(max(sizes), wait_ms))}
    ports = {mode: srv.start() for mode, srv in servers.items()}
    messages = [_message(policy, rng) for _ in range(max(sizes))]
    for i, m in enumerate(messages):
        m["prompt"] = PROMPTS[i % len(PROMPTS)]
    out: dict = {}
    try:
        for n in sizes:
            row: list[dict] = []
            for r in range(rounds):  # A B, B A, ...: a load drift hits both modes alike
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                phase = {mode: _phase(ports[mode], messages[:n], requests) for mode in order}
                row.append({**phase, "ratios": _ratios(phase["one_at_a_time"], phase["batched"])})
            throughput = [r["ratios"]["throughput_batched_over_one_at_a_time"] for r in row]
            latency = [np.median(r["ratios"]["p50_round_trip_batched_over_one_at_a_time"]) for r in row]
            out[str(n)] = {"rounds": row, "median_over_rounds": {
                "throughput_batched_over_one_at_a_time": round(float(np.median(throughput)), 3),
                "p50_round_trip_batched_over_one_at_a_time": round(float(np.median(latency)), 3)}}
    finally:
        for srv in servers.values():
            srv.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", help="pack directory, or demo")
    ap.add_argument("--target", default="x86", help="a target whose Policy batches: x86 or cuda")
    ap.add_argument("--threads", type=int, default=None, help="x86 only: compute threads (default: all cores)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--requests", type=int, default=10, help="per client and phase")
    ap.add_argument("--repeats", type=int, default=5, help="model measurement: timed repeats (min taken)")
    ap.add_argument("--rounds", type=int, default=3, help="serve measurement: rounds per N, modes alternating")
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--note", default="", help="free text stored with the result (e.g. 'shared, loaded machine')")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    options = {"threads": args.threads} if args.threads is not None and args.target == "x86" else {}
    policy = load_policy(resolve_pack(args.pack), target=args.target, seed=0, **options)
    if not policy.batches:
        raise SystemExit(f"target '{args.target}' does not batch (x86 and cuda do); nothing to compare")
    rng = np.random.default_rng(0)
    try:
        policy.infer(random_observation(policy.pack, rng))  # warm-up outside every measurement
        model = _model(policy, args.clients, args.repeats, rng)
        serve = _serve(policy, args.clients, args.requests, args.batch_wait_ms, args.rounds, rng)
    finally:
        policy.close()
    result = {"pack": policy.info.pack_name, "target": args.target, "backend": policy.info.backend.get("backend"),
              "expert_graph": policy.info.backend.get("expert_graph"), "threads": policy.info.backend.get("threads"),
              "machine": {"cpu_count": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                          "processor": platform.processor() or platform.machine()},
              "note": args.note, "requests_per_client": args.requests, "batch_wait_ms": args.batch_wait_ms,
              "model": model, "serve": serve}
    print(json.dumps(result, indent=1))
    path = args.json or Path(__file__).resolve().parent / "results" / f"serve_batching_{args.target}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
