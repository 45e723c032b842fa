"""GPU chunk latency: vla-edge's `cuda` target beside realtime-vla (the anchor), one script, one GPU.

    python benchmarks/gpu_vs_realtime_vla.py --anchor DIR --pack PACK [--tiny-pack TINY] [--views 1,2,3]
        [--prompt-len 70] [--chunks 20] [--rounds 4] [--variant NAME:OPTIONS[:ENV]]...
        [--out benchmarks/results/gpu_vs_realtime_vla.json]

The anchor is realtime-vla (Dexmal; the public snapshot tuanhe/realtime-vla holds pi0_infer.py and
pi05_infer.py together): it is *run*, from DIR (an ignored scratch folder carried to the GPU
machine), never copied into this repository. Both sides compute a pi0.5 chunk of horizon 50 with
ten flow steps from V camera views and the same number of prompt tokens; the anchor on its own
random bf16 weights (cost does not depend on weight values), ours on PACK.

Every side runs in its own worker process (two CUDA runtimes, and ggml-CUDA reads some switches
from the environment once per process), loaded once and driven over a pipe. Ours runs as several
*variants* (runtime options and environment, `--variant`), the first being what a user gets by
default. For each view count the workers are timed in turn, `--rounds` rounds of `--chunks /
--rounds` chunks each after three warm-up chunks, so drift of the machine hits every side alike.

Reported per view count: median and p95 per side, ratio = variant / anchor (median), our stage
times; per variant the rel-L2 of its chunk against the first variant's and against the F16
variant's on the same inputs and noise (when one is given), per stage the fraction of the GPU's
weight-bandwidth / tensor-core floor reached (vla_edge.bench.gpu_floors), its load time and its process's memory:
peak RSS against the goal pack x 1.15 + 300 MB plus the CUDA context (measured in that process by
loading TINY first, when given), and what its first chunks decided (`decided`: `vision_loop`,
`prefix_loop`, `expert_loop`, our own CUDA loop or ggml's graph and why; `constants`, e.g. whether the gates were folded). Plus GPU
name, pack recipe and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HORIZON, ACTION_DIM, STEPS = 50, 32, 10
DEFAULT_VARIANTS = ("default::",)  # the cuda target's defaults, nothing in the environment


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- worker side (one process per side) ------------------------------------------------------------

class Ours:
    """The `cuda` target's backend on Pi05Inputs with V random images and a fixed-length prompt."""

    def __init__(self, pack_dir: str, options: dict[str, str], tiny_pack: str | None, target: str = "cuda"):
        from vla_edge.packs.pack import Pack
        from vla_edge.targets.registry import create_backend

        self.memory: dict[str, float] = {"baseline_mb": rss_mb()}
        if tiny_pack:  # the CUDA context (+ a few MB of tiny weights): what the goal allows on top
            tiny = create_backend(target, Pack.open(Path(tiny_pack), check="size"))
            tiny.close()
            self.memory["with_cuda_context_mb"] = rss_mb()
        start = time.perf_counter()
        self.pack = Pack.open(Path(pack_dir), check="size")
        self.backend = create_backend(target, self.pack, **options)
        self.load_s = time.perf_counter() - start
        self.memory["after_load_mb"] = rss_mb()
        self.inputs = None

    def setup(self, views: int, prompt_len: int, seed: int) -> None:
        from vla_edge.families.pi05.inputs import Pi05Inputs

        rng = np.random.default_rng(seed)  # the same inputs in every variant's process
        cfg = self.pack.config
        tokens = rng.integers(3, cfg.llm.vocab_size, size=prompt_len).astype(np.int32)
        tokens[0] = cfg.bos_token_id
        slots = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")[:views]
        self.inputs = Pi05Inputs(images=rng.uniform(-1, 1, (views, 224, 224, 3)).astype(np.float32),
                                 image_slots=slots, tokens=tokens,
                                 noise=rng.standard_normal((cfg.action_horizon, cfg.action_dim)).astype(np.float32),
                                 num_steps=STEPS)

    def chunk(self) -> tuple[float, dict[str, float], np.ndarray]:
        start = time.perf_counter()
        result = self.backend.sample_actions(self.inputs)  # returns host numpy: the GPU work is done
        return (time.perf_counter() - start) * 1e3, result.latency_ms, result.actions

    def describe(self) -> dict[str, Any]:
        return {"load_s": self.load_s, "recipe": self.pack.manifest.quantization.recipe,
                "pack_bytes": self.pack.manifest.files.weights.size, "backend": self.backend.describe()}


class Anchor:
    """realtime-vla's Pi05Inference (its own benchmark's settings: no discrete state input,
    language embeddings given), timed with a device synchronisation after each chunk."""

    def __init__(self, anchor_dir: str):
        import torch

        sys.path.insert(0, anchor_dir)
        self.torch = torch
        self.memory = {"baseline_mb": rss_mb()}
        self.infer = None

    def setup(self, views: int, prompt_len: int, seed: int) -> None:
        from pi05_infer import Pi05Inference  # noqa: PLC0415 - the anchor's own module, run not copied

        torch = self.torch
        torch.manual_seed(seed)
        self.infer = None
        torch.cuda.empty_cache()
        self.infer = Pi05Inference({"language_embeds": torch.randn(prompt_len, 2048, dtype=torch.bfloat16)},
                                   num_views=views, chunk_size=HORIZON, discrete_state_input=False)
        self.images = torch.randn(views, 224, 224, 3, dtype=torch.bfloat16, device="cuda")
        self.noise = torch.randn(HORIZON, ACTION_DIM, dtype=torch.bfloat16, device="cuda")

    def chunk(self) -> tuple[float, dict[str, float], None]:
        self.torch.cuda.synchronize()
        start = time.perf_counter()
        self.infer.forward(self.images, self.noise)
        self.torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3, {}, None

    def describe(self) -> dict[str, Any]:
        return {"implementation": "realtime-vla Pi05Inference (bf16 Triton, CUDA graph)"}


def worker(spec: dict[str, Any]) -> None:
    """Serve one side: JSON commands on stdin, one JSON answer line each on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the libraries print must not corrupt the protocol
    side = (Anchor(spec["anchor"]) if spec["kind"] == "anchor"
            else Ours(spec["pack"], spec["options"], spec.get("tiny"), spec.get("target", "cuda")))

    def answer(obj: Any) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    answer({"ready": side.describe()})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "setup":
            side.setup(cmd["views"], cmd["prompt_len"], cmd["seed"])
            answer({})
        elif cmd["cmd"] == "time":
            runs = [side.chunk() for _ in range(cmd["n"])]
            answer({"ms": [r[0] for r in runs], "stages": [r[1] for r in runs]})
        elif cmd["cmd"] == "actions":
            answer({"actions": side.chunk()[2].tolist()})
        elif cmd["cmd"] == "describe":  # after chunks ran: what the first chunk decided (e.g. expert_loop)
            answer(side.describe())
        elif cmd["cmd"] == "memory":
            answer({**side.memory, "peak_rss_mb": peak_rss_mb(), "rss_mb": rss_mb()})
        elif cmd["cmd"] == "quit":
            return


# ---- driver side ---------------------------------------------------------------------------------

class Worker:
    def __init__(self, name: str, spec: dict[str, Any], env: dict[str, str]):
        self.name, self.spec = name, spec
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **env})
        self.ready = self.ask(None)["ready"]

    def ask(self, cmd: dict[str, Any] | None) -> dict[str, Any]:
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.name} died (exit {self.proc.wait()}); its stderr is above")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def widened(ready: dict[str, Any]) -> bool:
    """Whether a worker's backend widened quantised matrices (what it chose, "auto" included)."""
    return str(ready.get("backend", {}).get("device_weights", "")).startswith(("f16", "bf16"))


def parse_variant(text: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """NAME:key=value,key=value[:ENV=value,ENV=value] -> (name, runtime options, environment)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise SystemExit(f"--variant {text!r}: expected NAME:OPTIONS[:ENV] (e.g. f16:device_weights=f16)")

    def pairs(s: str) -> dict[str, str]:
        return dict(p.split("=", 1) for p in s.split(",") if p)

    return parts[0], pairs(parts[1]), pairs(parts[2]) if len(parts) == 3 else {}


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def measure(views: int, workers: dict[str, Worker], args: argparse.Namespace, seed: int, gpu_name: str,
            widened: dict[str, bool], failed: dict[str, str]) -> dict[str, Any]:
    from vla_edge.bench.gpu_floors import stage_floors, stage_work
    from vla_edge.packs.gguf_io import GGUFFile
    from vla_edge.packs.pack import Pack

    pack = Pack.open(args.pack, check="size")
    infos = GGUFFile(pack.weights_path).tensor_infos()
    floor_work = {name: stage_work(pack.config, infos, views, args.prompt_len, STEPS, widen)
                  for name, widen in widened.items()}
    for name, w in list(workers.items()):
        try:
            w.ask({"cmd": "setup", "views": views, "prompt_len": args.prompt_len, "seed": seed})
            w.ask({"cmd": "time", "n": 3})  # warm-up: graphs built, CUDA graphs captured
        except SystemExit as exc:  # a variant that crashes is reported, the others go on
            if name == "anchor":
                raise
            print(f"variant {name} dropped: {exc}", flush=True)
            failed[name] = str(exc)
            del workers[name]
    times: dict[str, list[float]] = {n: [] for n in workers}
    by_round: dict[str, list[list[float]]] = {n: [] for n in workers}  # where in a round the slow chunks fall
    stages: dict[str, list[dict[str, float]]] = {n: [] for n in workers}
    per_round = max(1, args.chunks // args.rounds)
    order = list(workers)
    for r in range(args.rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            got = workers[name].ask({"cmd": "time", "n": per_round})
            times[name] += got["ms"]
            by_round[name].append(got["ms"])
            stages[name] += got["stages"]
    anchor_ms = statistics.median(times["anchor"])
    out: dict[str, Any] = {"anchor_ms": anchor_ms, "anchor_p95_ms": float(np.percentile(times["anchor"], 95)),
                           "chunks_each": len(times["anchor"]), "anchor_rounds_ms": by_round["anchor"], "variants": {}}
    actions = {n: np.asarray(w.ask({"cmd": "actions"})["actions"]) for n, w in workers.items() if n != "anchor"}
    first = next(iter(actions))
    for name in actions:
        med = statistics.median(times[name])
        v = {"ms": med, "p95_ms": float(np.percentile(times[name], 95)), "ratio": med / anchor_ms,
             "rounds_ms": by_round[name],
             "stages_p50_ms": {k: statistics.median(s[k] for s in stages[name])
                               for k in ("vision", "prefix", "expert_total") if k in stages[name][0]},
             f"rel_l2_vs_{first}": rel_l2(actions[name], actions[first]),
             "decided": {k: v for k, v in workers[name].ask({"cmd": "describe"})["backend"].items()
                         if k in ("vision_loop", "prefix_loop", "expert_loop", "constants")}}  # what the first chunk chose
        if args.f16_variant in actions:
            v[f"rel_l2_vs_{args.f16_variant}"] = rel_l2(actions[name], actions[args.f16_variant])
        v["floors"] = stage_floors(floor_work[name], v["stages_p50_ms"], gpu_name)
        out["variants"][name] = v
    ours = out["variants"][first]
    out.update({"ours_ms": ours["ms"], "ours_p95_ms": ours["p95_ms"], "ratio": ours["ratio"],
                "ours_stages_p50_ms": ours["stages_p50_ms"]})
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchor", type=Path, required=True, help="folder with realtime-vla's pi0_infer.py + pi05_infer.py")
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--tiny-pack", type=Path, help="a tiny pack: loaded first in each of our workers to measure "
                    "the CUDA context's share of its RSS")
    ap.add_argument("--target", default="cuda", help="our side's target (cuda; x86 only to dry-run this script)")
    ap.add_argument("--views", default="1,2,3")
    ap.add_argument("--prompt-len", type=int, default=70)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--variant", action="append", help="NAME:OPTIONS[:ENV]; the first is the headline "
                    f"(default {DEFAULT_VARIANTS[0]!r})")
    ap.add_argument("--f16-variant", default="f16", help="variant whose chunk is the F16 comparison point")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_vs_realtime_vla.json")
    args = ap.parse_args()
    for name in ("pi0_infer.py", "pi05_infer.py"):
        if not (args.anchor / name).is_file():
            sys.exit(f"{args.anchor / name}: missing (realtime-vla's snapshot tuanhe/realtime-vla has both)")
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    if len({v[0] for v in variants}) != len(variants) or "anchor" in {v[0] for v in variants}:
        sys.exit("--variant names must be unique and not 'anchor'")

    workers: dict[str, Worker] = {}
    try:
        failed: dict[str, str] = {}
        for name, options, env in variants:
            spec = {"kind": "ours", "pack": str(args.pack), "options": options, "target": args.target,
                    "tiny": str(args.tiny_pack) if args.tiny_pack else None}
            try:
                workers[name] = Worker(name, spec, env)
            except SystemExit as exc:
                if name == variants[0][0]:
                    raise
                print(f"variant {name} dropped: {exc}", flush=True)
                failed[name] = str(exc)
                continue
            print(f"variant {name}: options {options} env {env}: loaded in {workers[name].ready['load_s']:.1f} s",
                  flush=True)
        workers["anchor"] = Worker("anchor", {"kind": "anchor", "anchor": str(args.anchor)}, {})
        import torch

        result: dict[str, Any] = {
            "gpu": torch.cuda.get_device_name(0), "prompt_len": args.prompt_len, "horizon": HORIZON,
            "flow_steps": STEPS, "pack": str(args.pack), "recipe": workers[variants[0][0]].ready["recipe"],
            "variants": {n: {"options": o, "env": e, **workers[n].ready} for n, o, e in variants if n in workers},
            "failed_variants": failed, "views": {}}
        seed = int(np.random.default_rng().integers(2**31))
        for views in (int(v) for v in args.views.split(",")):
            r = measure(views, workers, args, seed + views, result["gpu"],
                        {n: widened(workers[n].ready) for n in workers}, failed)
            result["views"][str(views)] = r
            line = ", ".join(f"{n} {v['ms']:.1f} ms ({v['ratio']:.2f}x)" for n, v in r["variants"].items())
            print(f"{views} view(s): anchor {r['anchor_ms']:.1f} ms | {line}", flush=True)
            for n, v in r["variants"].items():
                stages = " ".join(f"{k} {t:.1f}" for k, t in v["stages_p50_ms"].items())
                floors = " ".join(f"{k} {f['fraction_of_floor']:.2f}" for k, f in (v["floors"] or {}).items()
                                  if f["fraction_of_floor"])
                print(f"    {n}: stages ms {stages} | fraction of floor {floors or 'n/a'}", flush=True)
            write_result(args.out, result)  # after every view count: a run cut short keeps what it measured
        for name in [n for n, _, _ in variants if n in workers]:
            mem = workers[name].ask({"cmd": "memory"})
            pack_mb = workers[name].ready["pack_bytes"] / 2**20
            context = mem.get("with_cuda_context_mb", mem["baseline_mb"]) - mem["baseline_mb"]
            mem["goal_mb"] = pack_mb * 1.15 + 300 + mem["baseline_mb"] + context
            mem["meets_goal"] = mem["peak_rss_mb"] <= mem["goal_mb"]
            result["variants"][name]["memory"] = mem
            print(f"{name}: peak RSS {mem['peak_rss_mb']:.0f} MB (goal {mem['goal_mb']:.0f} MB = pack x 1.15 + 300 "
                  f"+ interpreter {mem['baseline_mb']:.0f} + CUDA context {context:.0f})", flush=True)
    finally:
        for w in workers.values():
            w.close()
    write_result(args.out, result)
    print(f"wrote {args.out}")


def write_result(out: Path, result: dict[str, Any]) -> None:
    # the device machine's copy of the tree carries an older .git: the caller passes the commit it sent
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result["commit"] = os.environ.get("VLA_EDGE_COMMIT") or commit.stdout.strip() or "unknown"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
