"""One side of benchmarks/vs_actquant.py, in its own process (two ggml builds cannot share one).

    python benchmarks/bench_side.py --side ours|actquant --pack DIR --threads N [--actquant-lib DIR]
                                    [--cpu-weights MODE]

Talks JSON lines: requests on stdin, replies on the file descriptor that was stdout at start;
stdout itself is redirected to a log file, because ActQuant's runtime prints its timing summary
there (parsed for its per-stage times). Requests:
  {"cmd": "run", "obs": "file.npz"}    -> {"seconds", "stages"}   (2 cameras + state + prompt)
  {"cmd": "agree", "image": "f.npy", "prompt": str, "noise": "n.npy"}   -> {"actions"}
      ActQuant: its 1-image path (its own fixed noise); ours: the same tokens, image and noise
  {"cmd": "peak"}  -> {"peak_rss_bytes"}
The first reply is the load: {"load_s", "rss_bytes", "describe"}.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# ActQuant's timing summary; run_multi times each camera ("Vision (base)", "Vision (left_wrist)").
STAGE_LINE = re.compile(r"^\s+(Vision(?: \([^)]*\))?|embed_prefix|compute_kv_cache|ODE loop total|Total)\s*:\s*([0-9.]+) ms")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ActQuantSide:
    """ActQuant's pi05.so: 2 cameras via run_multi (its third slot masked), its own tokenizer."""

    def __init__(self, pack: Path, threads: int, lib: Path, log: Path):
        sys.path.insert(0, str(lib))
        import pi05  # noqa: PLC0415 - ActQuant's module, from the scratch build

        self.log = log
        self.offset = 0
        self.pipe = pi05.Pi05Pipeline(str(pack / "pi05.gguf"), str(pack / "tokenizer.model"), "CPU", threads, 10)

    def _stages(self) -> dict[str, float]:
        ctypes.CDLL(None).fflush(None)
        text = self.log.read_text(errors="replace")[self.offset:]
        self.offset += len(text)
        names = {"embed_prefix": "embed_prefix", "compute_kv_cache": "prefix", "ODE loop total": "expert_total",
                 "Total": "total"}
        stages: dict[str, float] = {}
        for m in filter(None, map(STAGE_LINE.match, text.splitlines())):
            key = "vision" if m.group(1).startswith("Vision") else names[m.group(1)]
            stages[key] = stages.get(key, 0.0) + float(m.group(2))
        return stages

    def run(self, obs: dict) -> dict:
        base, wrist = obs["cameras"][:2]
        t0 = time.perf_counter()
        self.pipe.run_multi(base, wrist, obs["prompt"])
        return {"seconds": time.perf_counter() - t0, "stages": self._stages()}

    def agree(self, image: np.ndarray, prompt: str, noise: np.ndarray) -> np.ndarray:
        out = np.asarray(self.pipe.run(image, prompt), dtype=np.float32)
        self._stages()
        return out


class OursSide:
    """vla-edge's x86 target through the public Policy (2 cameras + state + prompt)."""

    def __init__(self, pack: Path, threads: int, cpu_weights: str | None):
        from vla_edge import load_policy

        opts = {"cpu_weights": cpu_weights} if cpu_weights else {}
        self.policy = load_policy(pack, target="x86", threads=threads, check="size", **opts)
        self.pack = pack

    def run(self, obs: dict) -> dict:
        from vla_edge.types import Observation

        names = list(self.policy.pack.manifest.cameras.values())
        o = Observation(cameras=dict(zip(names, obs["cameras"])), state=obs["state"], prompt=obs["prompt"],
                        timestamp=time.monotonic())
        t0 = time.perf_counter()
        chunk = self.policy.infer(o)
        seconds = time.perf_counter() - t0
        lat = chunk.latency_ms
        return {"seconds": seconds, "stages": {k: float(v) for k, v in lat.items() if not k.startswith("expert_step_")}}

    def agree(self, image: np.ndarray, prompt: str, noise: np.ndarray) -> np.ndarray:
        """ActQuant's 1-image inputs on our runtime: its tokens (OpenPI's pi0.5 recipe: cleaned
        prompt with BOS, then the '\\n' token), its image normalisation, its noise."""
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(self.pack / "tokenizer.model"))
        cleaned = prompt.strip().replace("_", " ").replace("\n", " ")
        tokens = np.asarray([sp.bos_id()] + sp.encode(cleaned) + sp.encode("\n"), dtype=np.int32)
        images = (image.astype(np.float32) / 255.0 * 2.0 - 1.0)[None]
        rt = self.policy._backend.runtime
        actions, _ = rt.sample_actions(np.ascontiguousarray(images), tokens, noise.astype(np.float32), 10)
        return np.asarray(actions, dtype=np.float32).ravel()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=["ours", "actquant"], required=True)
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--actquant-lib", type=Path)
    ap.add_argument("--cpu-weights")
    args = ap.parse_args()
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    log = Path(tempfile.mkstemp(prefix=f"side-{args.side}-", suffix=".log")[1])
    fd = os.open(log, os.O_WRONLY | os.O_TRUNC)
    os.dup2(fd, 1)
    sys.stdout = open(os.devnull, "w")

    t0 = time.perf_counter()
    if args.side == "actquant":
        if not args.actquant_lib:
            raise SystemExit("--actquant-lib (the folder holding ActQuant's pi05*.so) is required for --side actquant")
        side = ActQuantSide(args.pack, args.threads, args.actquant_lib, log)
        side._stages()
        describe = {"implementation": "ActQuant pi05.so"}
    else:
        side = OursSide(args.pack, args.threads, args.cpu_weights)
        describe = side.policy.info.backend
    reply.write(json.dumps({"load_s": time.perf_counter() - t0, "rss_bytes": _rss(), "describe": describe}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "run":
            with np.load(req["obs"]) as z:
                obs = {"cameras": [z["camera0"], z["camera1"]], "state": z["state"], "prompt": str(z["prompt"])}
            out = side.run(obs)
        elif req["cmd"] == "agree":
            actions = side.agree(np.load(req["image"]), req["prompt"], np.load(req["noise"]))
            out = {"actions": actions.tolist()}
        elif req["cmd"] == "peak":
            out = {"peak_rss_bytes": _peak_rss(), "rss_bytes": _rss()}
        else:
            out = {"error": f"unknown cmd {req['cmd']!r}"}
        reply.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
