"""The native core's batched pass on one device, with nothing but the built module and NumPy (for
a GPU machine without vla-edge's Python dependencies): batched chunks against single passes on
fresh random inputs that differ per observation (cameras, prompt length, images, noise), for both
expert graphs, and ms per chunk of one batched pass against B single passes, same run.

    python benchmarks/native_batch_check.py PI05.GGUF [--device cuda:0] [--sizes 1 2 4] [--json out.json]

Inputs are model-space (images in [-1, 1], token ids, noise), as the Policy hands them to the core.
Exit status 1 when a batched chunk is further than --tol (rel-L2) from its single pass.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

try:
    from vla_edge import _native
except ImportError:  # a bare build directory on PYTHONPATH
    import _native  # type: ignore[no-redef]


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def observations(rt, rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    s = rt.image_size
    out = []
    for i in range(n):
        cameras, tokens = (2, 1, 3)[i % 3], (9, 23, 4)[i % 3]
        out.append((rng.uniform(-1, 1, (cameras, s, s, 3)).astype(np.float32),
                    np.concatenate([[2], rng.integers(3, 250, tokens - 1)]).astype(np.int32),
                    rng.standard_normal((rt.horizon, rt.action_dim)).astype(np.float32)))
    return out


def check(rt, rng: np.random.Generator, steps: int) -> dict[str, float]:
    errors = {}
    for b in (2, 3):
        obs = observations(rt, rng, b)
        batched, _ = rt.sample_actions_batch(*map(list, zip(*obs)), steps)
        for i, (images, tokens, noise) in enumerate(obs):
            errors[f"B{b}_obs{i}"] = rel_l2(batched[i], rt.sample_actions(images, tokens, noise, steps)[0])
    return errors


def timing(rt, rng: np.random.Generator, sizes: list[int], steps: int, repeats: int) -> dict[str, dict]:
    out = {}
    for b in sizes:
        obs = observations(rt, rng, b)
        args = list(map(list, zip(*obs)))
        rt.sample_actions_batch(*args, steps)  # builds and buffers outside the timing
        for o in obs:
            rt.sample_actions(*o, steps)
        single, batched = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for o in obs:
                rt.sample_actions(*o, steps)
            single.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            rt.sample_actions_batch(*args, steps)
            batched.append((time.perf_counter() - t0) * 1e3)
        s, bt = float(np.median(single)), float(np.median(batched))
        out[str(b)] = {"one_at_a_time_ms_per_chunk": round(s / b, 3), "batched_ms_per_chunk": round(bt / b, 3),
                       "throughput_batched_over_one_at_a_time": round(s / bt, 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--tol", type=float, default=None,
                    help="rel-L2 bound (default 1e-5 on the CPU, 1e-3 off it: cuBLAS picks F16 / TF32 kernels by "
                         "token count, so a batch's products round differently; the GPU forms agree to ~7e-4)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rng = np.random.default_rng()
    result: dict = {"gguf": args.gguf.name, "device": args.device, "system": _native.system_info(), "graphs": {}}
    worst = 0.0
    for graph in ("step", "chunk"):
        rt = _native.Pi05Runtime(str(args.gguf), args.threads, args.device, False, graph)
        errors = check(rt, rng, args.steps)
        worst = max(worst, *errors.values())
        result["graphs"][graph] = {"backend": rt.backend, "rel_l2_batched_vs_single": errors,
                                   "timing": timing(rt, rng, args.sizes, args.steps, args.repeats)}
    tol = args.tol if args.tol is not None else (1e-5 if args.device == "cpu" else 1e-3)
    result["worst_rel_l2"], result["tolerance"] = worst, tol
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    raise SystemExit(0 if worst <= tol else 1)


if __name__ == "__main__":
    main()
