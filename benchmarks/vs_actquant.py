"""vla-edge `x86` against ActQuant's pi0.5 runtime on this machine, side by side in one run.

    python benchmarks/vs_actquant.py --pack DIR --actquant-lib [LABEL=]DIR ... --threads N [--rounds 5]
                                     [--cpu-weights mapped repacked ...] [--ours-env LABEL:VAR=VALUE ...]

--pack: a full-size pack vla-edge wrote (`vla-edge pack synth --size full` + `vla-edge pack quantize
--recipe actquant-3.97`); ActQuant's runtime loads its pi05.gguf and tokenizer.model unchanged.
--actquant-lib: the folder with ActQuant's pi05*.so (benchmarks/build_actquant.sh builds it); several
builds (e.g. `native=.../build noamx=.../build-noamx`) each run as their own side, and the headline
ratio is against the FASTEST of them, so a build setting that happens to slow ActQuant down on this
CPU cannot flatter us. Each anchor's ggml ISA settings are read from its CMakeCache.txt and recorded.

Each side runs in its own process (benchmarks/bench_side.py; two ggml builds cannot share one).
Every round gives each side the same FRESH random observation (2 cameras at 224x224, state,
prompt): ActQuant skips its vision and prefix when an observation repeats, so repeating one would
time only its action expert. Sides alternate within each round, in an order that flips every
round, so drift in the shared machine's load falls on both. Reports median and spread (min..max)
of the whole call, per stage where both sides say it, load time and peak RSS per process, and the
chunk agreement on ActQuant's 1-image path (its fixed noise, fed to ours too).
Writes benchmarks/results/x86_vs_actquant_<threads>t.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROMPT = "pick up the red block and put it in the bowl"
# libstdc++'s std::normal_distribution<float> over std::mt19937(42): ActQuant's fixed noise.
NOISE_CPP = r"""
#include <cstdio>
#include <cstdlib>
#include <random>
int main(int argc, char** argv) {
    int n = std::atoi(argv[1]);
    std::mt19937 rng(42);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (int i = 0; i < n; ++i) std::printf("%.9g\n", dist(rng));
}
"""


class Side:
    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None):
        self.name = name
        self.env = env or {}
        self.proc = subprocess.Popen([sys.executable, str(HERE / "bench_side.py"), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1, env={**os.environ, **self.env})
        self.loaded = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name} side exited (rc {self.proc.wait()}); see its stderr above")
        out = json.loads(line)
        if "error" in out:
            raise SystemExit(f"{self.name} side: {out['error']}")
        return out

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def actquant_noise(n: int, tmp: Path) -> np.ndarray:
    src = tmp / "noise.cpp"
    src.write_text(NOISE_CPP)
    subprocess.run(["c++", "-O2", "-o", str(tmp / "noise"), str(src)], check=True)
    out = subprocess.run([str(tmp / "noise"), str(n)], check=True, capture_output=True, text=True).stdout
    return np.array(out.split(), dtype=np.float32)


def cpu_description() -> dict:
    """Model name and the ISA extensions ggml's x86 kernels choose between (the CPU differs between
    sessions here: AVX2-only, AVX-512, AVX-512 + AMX)."""
    text = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    wanted = ["avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512vbmi",
              "amx_tile", "amx_int8", "amx_bf16"]
    return {"model": fields.get("model name", platform.processor() or platform.machine()),
            "isa": [f for f in wanted if f in flags], "cores": os.cpu_count()}


def anchor_build(lib: Path) -> dict:
    """ActQuant's commit and the ggml ISA switches its build used (from the CMake cache above `lib`)."""
    info: dict = {"lib": str(lib)}
    for up in (lib, *lib.parents[:3]):
        cache = up / "CMakeCache.txt"
        if cache.is_file():
            keys = ("CMAKE_BUILD_TYPE", "GGML_NATIVE", "GGML_AVX512", "GGML_AMX_INT8", "GGML_AMX_TILE", "GGML_OPENMP",
                    "GGML_LLAMAFILE")
            for line in cache.read_text(errors="replace").splitlines():
                name = line.split(":", 1)[0]
                if name in keys:
                    info[name] = line.split("=", 1)[1]
            source = Path(next((ln.split("=", 1)[1] for ln in cache.read_text(errors="replace").splitlines()
                                if ln.startswith("CMAKE_HOME_DIRECTORY")), ""))
            if (source / "ACTQUANT_COMMIT").is_file():
                info["actquant_commit"] = (source / "ACTQUANT_COMMIT").read_text().strip()
            break
    return info


def parse_anchors(values: list[str]) -> dict[str, Path]:
    anchors: dict[str, Path] = {}
    for v in values:
        label, _, path = v.rpartition("=")
        lib = Path(path)
        if not any(lib.glob("pi05*.so")):
            raise SystemExit(f"--actquant-lib {v}: no pi05*.so in {lib} (benchmarks/build_actquant.sh builds it)")
        anchors[f"actquant:{label}" if label else ("actquant" if len(values) == 1 else f"actquant:{lib.name}")] = lib
    return anchors


def parse_env_variants(values: list[str]) -> dict[str, dict[str, str]]:
    """`LABEL:VAR=VAL[,VAR=VAL...]` -> {LABEL: {VAR: VAL}}: our side again with ggml's run-time switches
    (e.g. `notiled:GGML_CPU_TILED_MM=0`), to attribute a difference to one of them in the same run."""
    variants: dict[str, dict[str, str]] = {}
    for v in values:
        label, sep, assignments = v.partition(":")
        pairs = [a.partition("=") for a in assignments.split(",") if a]
        if not label or not sep or not pairs or any(not name or not eq for name, eq, _ in pairs):
            raise SystemExit(f"--ours-env {v!r}: expected LABEL:VAR=VALUE[,VAR=VALUE...]")
        variants[label] = {name: val for name, _, val in pairs}
    return variants


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "all": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--actquant-lib", nargs="+", required=True, metavar="[LABEL=]DIR",
                    help="one or more ActQuant builds; the headline ratio is against the fastest")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--cpu-weights", nargs="+", default=["mapped"],
                    help="our variants, each its own process (first one is the headline ratio)")
    ap.add_argument("--ours-env", nargs="+", default=[], metavar="LABEL:VAR=VALUE",
                    help="further sides of ours (first --cpu-weights mode) with these environment variables")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.rounds < 3:
        raise SystemExit("--rounds must be >= 3 (median and spread need several)")
    from vla_edge.packs.golden import random_observation
    from vla_edge.packs.pack import Pack
    from vla_edge.packs.writer import rel_l2

    pack = Pack.open(args.pack, check="size")
    pack_bytes = sum(f.stat().st_size for f in args.pack.iterdir() if f.is_file())
    common = ["--pack", str(args.pack), "--threads", str(args.threads)]
    anchors = parse_anchors(args.actquant_lib)
    sides = {name: Side(name, ["--side", "actquant", "--actquant-lib", str(lib), *common])
             for name, lib in anchors.items()}
    for mode in args.cpu_weights:
        sides[f"ours:{mode}"] = Side(f"ours:{mode}", ["--side", "ours", "--cpu-weights", mode, *common])
    for label, env in parse_env_variants(args.ours_env).items():
        sides[f"ours:{label}"] = Side(f"ours:{label}", ["--side", "ours", "--cpu-weights", args.cpu_weights[0], *common],
                                      env)
    rng = np.random.default_rng(args.seed)
    times: dict[str, list[float]] = {k: [] for k in sides}
    stages: dict[str, dict[str, list[float]]] = {k: {} for k in sides}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for r in range(args.warmup + args.rounds):
            obs = random_observation(pack, rng, prompt=PROMPT)
            cams = [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(2)]
            path = tmp / f"obs{r}.npz"
            np.savez(path, camera0=cams[0], camera1=cams[1], state=obs.state, prompt=np.array(PROMPT))
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for name in order:
                out = sides[name].ask(cmd="run", obs=str(path))
                if r < args.warmup:
                    continue
                times[name].append(out["seconds"])
                for k, v in out["stages"].items():
                    stages[name].setdefault(k, []).append(v)
            if r >= args.warmup:
                print(f"round {r - args.warmup + 1}: " + ", ".join(f"{k} {times[k][-1]:.2f} s" for k in sides),
                      flush=True)
        # Chunk agreement on ActQuant's 1-image path with its fixed noise.
        horizon, dim = pack.config.action_horizon, pack.config.action_dim
        noise = actquant_noise(horizon * dim, tmp).reshape(horizon, dim)
        image = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
        np.save(tmp / "image.npy", image)
        np.save(tmp / "noise.npy", noise)
        chunks = {k: np.array(s.ask(cmd="agree", image=str(tmp / "image.npy"), prompt=PROMPT,
                                    noise=str(tmp / "noise.npy"))["actions"], dtype=np.float32)
                  for k, s in sides.items()}
    peaks = {k: s.ask(cmd="peak") for k, s in sides.items()}
    for s in sides.values():
        s.close()

    medians = {name: statistics.median(times[name]) for name in sides}
    best = min(anchors, key=medians.get)
    aq = medians[best]
    first = next(iter(anchors))
    result = {
        "machine": {"cpu": cpu_description(), "threads": args.threads, "load_before": os.getloadavg()},
        "commit": subprocess.run(["git", "-C", str(HERE), "rev-parse", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "anchors": {name: anchor_build(lib) for name, lib in anchors.items()},
        "headline_anchor": best,
        "pack": {"path": str(args.pack), "bytes": pack_bytes, "recipe": pack.manifest.quantization.recipe},
        "rounds": args.rounds, "warmup": args.warmup, "fresh_observation_every_call": True,
        "prompt": PROMPT, "sides": {},
    }
    for name in sides:
        med = statistics.median(times[name])
        result["sides"][name] = {
            "chunk_s": spread(times[name]),
            "stages_ms": {k: spread(v) for k, v in stages[name].items()},
            "load_s": sides[name].loaded["load_s"],
            "peak_rss_bytes": peaks[name]["peak_rss_bytes"],
            "peak_rss_over_pack": peaks[name]["peak_rss_bytes"] / pack_bytes,
            "rss_goal_bytes": pack_bytes * 1.15 + 300e6,
            "describe": sides[name].loaded["describe"],
            "env": sides[name].env,
            "ratio_vs_actquant_median": med / aq,
            "ratio_vs_actquant_per_round": [a / b for a, b in zip(times[name], times[best])],
            "ratio_vs_each_anchor": {a: med / medians[a] for a in anchors},
        }
        if name != first:
            result["sides"][name][f"agreement_rel_l2_vs_{first}_1image"] = rel_l2(
                chunks[name].reshape(horizon, dim), chunks[first].reshape(horizon, dim))
    out = args.out or HERE / "results" / f"x86_vs_actquant_{args.threads}t.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{result['machine']['cpu']['model']} ({' '.join(result['machine']['cpu']['isa'])}); {args.threads} threads, "
          f"{args.rounds} rounds, fresh observations; pack {pack_bytes / 1e9:.2f} GB; ratios against {best}")
    for name, d in result["sides"].items():
        c = d["chunk_s"]
        st = ", ".join(f"{k} {v['median']:.0f}" for k, v in d["stages_ms"].items())
        agree = d.get(f"agreement_rel_l2_vs_{first}_1image")
        print(f"{name:16s} chunk median {c['median']:.2f} s ({c['min']:.2f}..{c['max']:.2f}); "
              f"ours/actquant {d['ratio_vs_actquant_median']:.2f}; load {d['load_s']:.2f} s; "
              f"peak RSS {d['peak_rss_bytes'] / 1e9:.2f} GB (goal <= {d['rss_goal_bytes'] / 1e9:.2f})"
              + (f"; 1-image chunk vs {first} rel-L2 {agree:.2e}" if agree is not None else "")
              + f"\n{'':16s} stages ms: {st}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
