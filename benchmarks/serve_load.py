"""`vla-edge serve` under load: per-client latency and total throughput with several robots on one
Policy, against one robot alone, measured in the same run.

    python benchmarks/serve_load.py PACK [--target x86] [--clients 4] [--requests 20]
                                         [--flood] [--max-batch 1] [--json out.json]

Phases, each on a fresh connection set to one in-process server (clients are threads speaking
the websocket protocol over loopback):
  alone   one client, --requests sequential requests (the baseline)
  shared  --clients clients at once, --requests each
  flood   (--flood) the same clients plus one that keeps max_in_flight requests queued all the time
Printed and written as JSON: per-client p50/p95 round trip and queue_ms, chunks/s, and the
ratios shared/alone. With --max-batch > 1 the target must batch (x86, cuda: docs/serve.md,
Batching); benchmarks/serve_batching.py compares batched against one-at-a-time in one run.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

from vla_edge.packs.demo import resolve_pack
from vla_edge.packs.golden import random_observation
from vla_edge.policy import load_policy
from vla_edge.serve import Batching, ConnectionLimits, PolicyServer, wire


def _message(policy, rng) -> dict:
    obs = random_observation(policy.pack, rng)
    return {"images": obs.cameras, "state": obs.state, "prompt": obs.prompt}


def _robot(port: int, message: dict, requests: int, out: dict, start: threading.Barrier) -> None:
    """Sequential requests, as a robot loop sends them: next one after the reply."""
    with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, open_timeout=30) as ws:
        ws.recv(timeout=30)
        start.wait(60)
        for _ in range(requests):
            t0 = time.perf_counter()
            ws.send(wire.packb(message))
            reply = wire.unpackb(ws.recv(timeout=600))
            out["round_trip_ms"].append((time.perf_counter() - t0) * 1e3)
            out["queue_ms"].append(reply["server_timing"]["queue_ms"])
            out["batch_size"].append(reply["server_timing"]["batch_size"])


def _flooder(port: int, message: dict, in_flight: int, stop: threading.Event, start: threading.Barrier) -> None:
    """Keeps `in_flight` requests unanswered until told to stop."""
    with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, open_timeout=30) as ws:
        ws.recv(timeout=30)
        start.wait(60)
        for _ in range(in_flight):
            ws.send(wire.packb(message))
        while not stop.is_set():
            ws.recv(timeout=600)
            ws.send(wire.packb(message))
        for _ in range(in_flight):
            ws.recv(timeout=600)


def _summary(samples: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(samples, 50)), 2), "p95": round(float(np.percentile(samples, 95)), 2),
            "max": round(float(np.max(samples)), 2)}


def _phase(port: int, messages: list[dict], requests: int, flood_in_flight: int = 0) -> dict:
    results = [{"round_trip_ms": [], "queue_ms": [], "batch_size": []} for _ in messages]
    start = threading.Barrier(len(messages) + (1 if flood_in_flight else 0))
    stop = threading.Event()
    robots = [threading.Thread(target=_robot, args=(port, m, requests, r, start)) for m, r in zip(messages, results)]
    flooder = (threading.Thread(target=_flooder, args=(port, messages[0], flood_in_flight, stop, start))
               if flood_in_flight else None)
    t0 = time.perf_counter()
    for t in robots + ([flooder] if flooder else []):
        t.start()
    for t in robots:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    if flooder:
        flooder.join()
    return {"clients": [{"round_trip_ms": _summary(r["round_trip_ms"]), "queue_ms": _summary(r["queue_ms"]),
                         "mean_batch_size": round(float(np.mean(r["batch_size"])), 2)} for r in results],
            "robot_chunks_per_s": round(len(messages) * requests / wall, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack", help="pack directory, or demo")
    ap.add_argument("--target", default="x86")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=20, help="per client and phase")
    ap.add_argument("--flood", action="store_true", help="add a phase with one client flooding requests")
    ap.add_argument("--max-in-flight", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=1)
    ap.add_argument("--batch-wait-ms", type=float, default=2.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    policy = load_policy(resolve_pack(args.pack), target=args.target, seed=0)
    server = PolicyServer(policy, host="127.0.0.1", port=0,
                          limits=ConnectionLimits(max_in_flight=args.max_in_flight, max_connections=args.clients + 2),
                          batching=Batching(args.max_batch, args.batch_wait_ms))
    port = server.start()
    rng = np.random.default_rng(0)
    messages = [_message(policy, rng) for _ in range(args.clients)]
    try:
        policy.infer(random_observation(policy.pack, rng))  # warm-up outside every phase
        alone = _phase(port, messages[:1], args.requests)
        shared = _phase(port, messages, args.requests)
        flood = _phase(port, messages, args.requests, flood_in_flight=args.max_in_flight) if args.flood else None
    finally:
        server.stop()
        policy.close()

    base = alone["clients"][0]["round_trip_ms"]["p50"]
    result = {
        "pack": policy.info.pack_name, "target": args.target, "clients": args.clients, "requests": args.requests,
        "max_batch": args.max_batch, "max_in_flight": args.max_in_flight,
        "alone": alone, "shared": shared, "flood": flood,
        "ratios": {
            "shared_p50_round_trip_over_alone": [round(c["round_trip_ms"]["p50"] / base, 3) for c in shared["clients"]],
            "shared_throughput_over_alone": round(shared["robot_chunks_per_s"] / alone["robot_chunks_per_s"], 3),
            **({"flood_p95_round_trip_over_shared": [
                round(f["round_trip_ms"]["p95"] / s["round_trip_ms"]["p95"], 3)
                for f, s in zip(flood["clients"], shared["clients"])]} if flood else {}),
        },
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
