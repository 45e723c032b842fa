"""GPU chunk latency: vla-edge's `cuda` target beside realtime-vla (the anchor), one process, one GPU.

    python benchmarks/gpu_vs_realtime_vla.py --anchor DIR --pack PACK [--views 1,2,3] [--prompt-len 70]
        [--chunks 20] [--rounds 4] [--out benchmarks/results/gpu_vs_realtime_vla.json]

The anchor is realtime-vla (Dexmal; the public snapshot tuanhe/realtime-vla holds pi0_infer.py,
pi05_infer.py and benchmark.py together): it is *run*, from DIR (an ignored scratch folder carried
to the GPU machine), never copied into this repository. Both sides compute a pi0.5 chunk of horizon
50 with ten flow steps from V camera views and the same number of prompt tokens; the anchor on its
own random bf16 weights (cost does not depend on weight values), ours on PACK. For each view count
the two are timed alternately, `--rounds` rounds of `--chunks / --rounds` chunks each after three
warm-up chunks, so drift of the machine hits both alike. Reported per view count: median and p95 of
each, and ratio = ours / anchor (median); plus GPU name, pack recipe, commit and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HORIZON, ACTION_DIM, STEPS = 50, 32, 10


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class Ours:
    """The `cuda` target's backend on Pi05Inputs with V random images and a fixed-length prompt."""

    def __init__(self, pack_dir: Path, views: int, prompt_len: int, rng: np.random.Generator):
        from vla_edge.families.pi05.inputs import Pi05Inputs
        from vla_edge.packs.pack import Pack
        from vla_edge.targets.registry import create_backend

        pack = Pack.open(pack_dir, check="size")
        self.backend = create_backend("cuda", pack)
        cfg = pack.config
        tokens = rng.integers(3, cfg.llm.vocab_size, size=prompt_len).astype(np.int32)
        tokens[0] = cfg.bos_token_id
        slots = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")[:views]
        self.inputs = Pi05Inputs(images=rng.uniform(-1, 1, (views, 224, 224, 3)).astype(np.float32),
                                 image_slots=slots, tokens=tokens,
                                 noise=rng.standard_normal((HORIZON, ACTION_DIM)).astype(np.float32),
                                 num_steps=STEPS)
        self.recipe = pack.manifest.quantization.recipe
        self.stages: dict[str, list[float]] = {}

    def chunk_ms(self) -> float:
        start = time.perf_counter()
        result = self.backend.sample_actions(self.inputs)  # returns host numpy: the GPU work is done
        elapsed = (time.perf_counter() - start) * 1e3
        for stage in ("vision", "prefix", "expert_total"):
            if stage in result.latency_ms:
                self.stages.setdefault(stage, []).append(result.latency_ms[stage])
        return elapsed


class Anchor:
    """realtime-vla's Pi05Inference (its own benchmark's settings: no discrete state input,
    language embeddings given), timed with a device synchronisation after each chunk."""

    def __init__(self, anchor_dir: Path, views: int, prompt_len: int):
        import torch

        sys.path.insert(0, str(anchor_dir))
        from pi05_infer import Pi05Inference  # noqa: PLC0415 - the anchor's own module, run not copied

        self.torch = torch
        self.infer = Pi05Inference({"language_embeds": torch.randn(prompt_len, 2048, dtype=torch.bfloat16)},
                                   num_views=views, chunk_size=HORIZON, discrete_state_input=False)
        self.images = torch.randn(views, 224, 224, 3, dtype=torch.bfloat16, device="cuda")
        self.noise = torch.randn(HORIZON, ACTION_DIM, dtype=torch.bfloat16, device="cuda")

    def chunk_ms(self) -> float:
        self.torch.cuda.synchronize()
        start = time.perf_counter()
        self.infer.forward(self.images, self.noise)
        self.torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3


def measure(views: int, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    ours, anchor = Ours(args.pack, views, args.prompt_len, rng), Anchor(args.anchor, views, args.prompt_len)
    for side in (ours, anchor):
        for _ in range(3):
            side.chunk_ms()
    times: dict[str, list[float]] = {"ours": [], "anchor": []}
    per_round = max(1, args.chunks // args.rounds)
    for _ in range(args.rounds):
        times["ours"] += [ours.chunk_ms() for _ in range(per_round)]
        times["anchor"] += [anchor.chunk_ms() for _ in range(per_round)]
    ours.backend.close()
    out = {f"{side}_ms": statistics.median(v) for side, v in times.items()}
    out.update({f"{side}_p95_ms": percentile(v, 95) for side, v in times.items()})
    out["ratio"] = out["ours_ms"] / out["anchor_ms"]
    out["chunks_each"] = len(times["ours"])
    out["ours_stages_p50_ms"] = {k: statistics.median(v) for k, v in ours.stages.items()}
    out["recipe"] = ours.recipe
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchor", type=Path, required=True, help="folder with realtime-vla's pi0_infer.py + pi05_infer.py")
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--views", default="1,2,3")
    ap.add_argument("--prompt-len", type=int, default=70)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_vs_realtime_vla.json")
    args = ap.parse_args()
    for name in ("pi0_infer.py", "pi05_infer.py"):
        if not (args.anchor / name).is_file():
            sys.exit(f"{args.anchor / name}: missing (realtime-vla's snapshot tuanhe/realtime-vla has both)")

    import resource
    import torch

    rng = np.random.default_rng()
    result = {"gpu": torch.cuda.get_device_name(0), "prompt_len": args.prompt_len, "horizon": HORIZON,
              "flow_steps": STEPS, "pack": str(args.pack), "views": {}}
    for views in (int(v) for v in args.views.split(",")):
        result["views"][str(views)] = measure(views, args, rng)
        r = result["views"][str(views)]
        print(f"{views} view(s): ours {r['ours_ms']:.1f} ms (p95 {r['ours_p95_ms']:.1f}), anchor {r['anchor_ms']:.1f} ms "
              f"(p95 {r['anchor_p95_ms']:.1f}), ratio {r['ratio']:.2f}", flush=True)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    # the device machine's copy of the tree carries an older .git: the caller passes the commit it sent
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result["commit"] = os.environ.get("VLA_EDGE_COMMIT") or commit.stdout.strip() or "unknown"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
