"""GPU machine: chunks whose input shape changes from call to call, the way a robot run's do.

    python benchmarks/gpu_shape_churn.py --pack PACK [--options k=v,...] [--shapes 2x70,2x73,1x70,3x76]
        [--repeat 3] [--rounds 3] [--compare-options k=v,...] --out OUT.json

The state is part of pi0.5's prompt, so its token count changes from tick to tick, and cameras can
drop out: a robot run changes the graphs' input shape often, while the speed benchmark holds one
shape per measurement. ggml-CUDA captures a CUDA graph once a shape has run twice; with F16 device
weights, switching shapes used to end the process with "an illegal instruction" (docs/gpu.md). This
runs every shape (VIEWSxPROMPT_TOKENS) `--repeat` times in turn, `--rounds` times over, on one loaded
backend with `--options`, then computes each shape's chunk again with `--compare-options` (default:
the pack's stored types) in the same process, on the same inputs and noise.

Reported: every call's latency in order (the first after a switch is marked), the median of first
calls after a switch against calls repeating the shape, the rel-L2 of each shape's chunk against the
comparison form, and whether the chunks of one shape stayed identical across rounds. A crash ends
the process (non-zero exit); the JSON is written after every round, so what ran before it is kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_vs_realtime_vla import Ours, parse_variant  # noqa: E402 - the benchmark's own worker

from vla_edge.packs.writer import rel_l2  # noqa: E402


def parse_options(text: str) -> dict[str, str]:
    return parse_variant(f"form:{text}")[1]


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in text.split(","):
        views, _, prompt = item.partition("x")
        shapes.append((int(views), int(prompt)))
    return shapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--options", default="", help="the form under test, k=v,... (runtime options of the target)")
    ap.add_argument("--compare-options", default="", help="the form each shape's chunk is checked against")
    ap.add_argument("--target", default="cuda", help="cuda; x86 only to dry-run this script")
    ap.add_argument("--shapes", default="2x70,2x73,1x70,3x76,2x66")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    shapes = parse_shapes(args.shapes)
    ours = Ours(str(args.pack), parse_options(args.options), None, target=args.target)
    result: dict = {"pack": str(args.pack), "options": args.options, "compare_options": args.compare_options,
                    "shapes": args.shapes, "repeat": args.repeat, "backend": ours.describe(), "calls": []}
    chunks: dict[tuple[int, int], list[np.ndarray]] = {s: [] for s in shapes}
    for rnd in range(args.rounds):
        for shape in shapes:
            ours.setup(*shape, seed=hash(shape) % 2**31)  # the same inputs whenever this shape comes back
            for rep in range(args.repeat):
                ms, _, actions = ours.chunk()
                result["calls"].append({"round": rnd, "shape": f"{shape[0]}x{shape[1]}", "first": rep == 0,
                                        "ms": round(ms, 3)})
                chunks[shape].append(actions)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"round {rnd}: {[c['ms'] for c in result['calls'][-len(shapes) * args.repeat:]]}", flush=True)
    ours.backend.close()
    compare = Ours(str(args.pack), parse_options(args.compare_options), None, target=args.target)
    errors = {}
    for shape in shapes:
        compare.setup(*shape, seed=hash(shape) % 2**31)
        want = compare.chunk()[2]
        errors[f"{shape[0]}x{shape[1]}"] = {
            "rel_l2_vs_compare": max(rel_l2(c, want) for c in chunks[shape]),
            "identical_across_calls": all(np.array_equal(c, chunks[shape][0]) for c in chunks[shape]),
        }
    first = [c["ms"] for c in result["calls"] if c["first"] and c["round"] > 0]
    repeat = [c["ms"] for c in result["calls"] if not c["first"]]
    result.update(errors=errors, first_after_switch_ms_median=statistics.median(first) if first else None,
                  repeated_shape_ms_median=statistics.median(repeat) if repeat else None, finished=time.time())
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("errors", "first_after_switch_ms_median", "repeated_shape_ms_median")},
                     indent=1), flush=True)


if __name__ == "__main__":
    main()
