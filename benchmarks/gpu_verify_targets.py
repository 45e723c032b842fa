"""GPU machine: the checks of issue 12 that need a GPU (run by benchmarks/gpu_verify_targets.sh).

1. `cuda` vs `reference` on the tiny pack, fresh random observations and noise: rel-L2 <= 5e-3
   (ggml-CUDA's F32 products use TF32 tensor cores: 5e-4..7e-4 measured before, docs/x86.md), with
   the default path (all flow steps in one graph, replayed as a CUDA graph) and with one graph per
   flow step; on a q4_k_m copy of the tiny pack also with its matrices widened to F16 on the GPU.
2. gb10 on this GPU: unavailable with a message pointing to cuda; with VLA_EDGE_GPU_DEV_FALLBACK=1
   it runs its ggml-CUDA fallback, marked as development, within the same tolerance.
3. TensorRT-RTX engines built here (CPU build for 12.1) and loaded on this GPU: refused with
   "compute capability 9.0 is not supported by TensorRT-RTX", both by our check and (precheck
   off) by TensorRT-RTX's own deserialisation, translated, never a crash.
Writes every number and message to OUT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import traceback
from pathlib import Path

import numpy as np

CUDA_TOLERANCE = 5e-3


def step(result: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        result[name] = {"ok": True, **fn()}
    except Exception as exc:  # noqa: BLE001 - every step reports, the next still runs
        result[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    result[name]["seconds"] = round(time.perf_counter() - t0, 1)
    print(name, json.dumps({k: v for k, v in result[name].items() if k != "traceback"}, default=str)[:1500], flush=True)


def compare(pack: Path, target: str, runs: int = 3, **options: str) -> dict:
    from vla_edge import load_policy
    from vla_edge.packs.golden import random_observation
    from vla_edge.packs.writer import rel_l2

    ref = load_policy(pack, target="reference")
    pol = load_policy(pack, target=target, **options)
    rng = np.random.default_rng()
    errs = []
    for _ in range(runs):
        obs = random_observation(ref.pack, rng)
        noise = rng.standard_normal(ref.noise_shape).astype(np.float32)
        errs.append(rel_l2(pol.infer(obs, noise=noise).actions, ref.infer(obs, noise=noise).actions))
    info = pol.info.backend
    pol.close()
    if not max(errs) <= CUDA_TOLERANCE:
        raise AssertionError(f"{target} vs reference rel-L2 {max(errs):.2e} above {CUDA_TOLERANCE:g}")
    return {"rel_l2": errs, "tolerance": CUDA_TOLERANCE, "backend": info}


def quantize(pack: Path, out: Path, recipe: str) -> dict:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "vla_edge.cli.main", "pack", "quantize", str(pack), "--recipe", recipe,
                    "--out", str(out)], check=True, capture_output=True)
    return {"pack": str(out)}


def gb10_unavailable(pack: Path) -> dict:
    from vla_edge import load_policy
    from vla_edge.errors import TargetUnavailableError

    try:
        load_policy(pack, target="gb10").close()
    except TargetUnavailableError as exc:
        if "use --target cuda" not in str(exc):
            raise AssertionError(f"message does not point to cuda: {exc}") from exc
        return {"message": str(exc)}
    raise AssertionError("gb10 loaded on a GPU that is not a GB10")


def dev_fallback(pack: Path) -> dict:
    os.environ["VLA_EDGE_GPU_DEV_FALLBACK"] = "1"
    try:
        out = compare(pack, "gb10", runs=2)
    finally:
        del os.environ["VLA_EDGE_GPU_DEV_FALLBACK"]
    if not (out["backend"]["development_fallback"] and out["backend"]["path"] == "fallback"):
        raise AssertionError(f"not marked as a development fallback: {out['backend']}")
    return out


def engine_refusal(pack: Path, work: Path) -> dict:
    from vla_edge.packs.pack import Pack
    from vla_edge.targets.gpu.engine_build import build_pack_engines
    from vla_edge.targets.gpu.engine_check import EngineRefused
    from vla_edge.targets.gpu.engine_runtime import load_stages
    from vla_edge.targets.gpu.facts import probe
    from vla_edge.targets.gpu.flavours import FLAVOURS, import_flavour

    engine_pack = work / "tiny-engines"
    shutil.copytree(pack, engine_pack)
    build_pack_engines(engine_pack, "gb10", ("fp16",))
    opened = Pack.open(engine_pack)
    flavour = FLAVOURS["gb10"]
    trt = import_flavour(flavour)
    gpu = probe().gpu(0)
    if gpu is None:
        raise RuntimeError(f"no GPU: {probe().describe_gpus()}")
    out = {"gpu": f"{gpu.name} {gpu.cc}", "tensorrt_rtx": trt.__version__}
    for precheck in (True, False):
        try:
            load_stages(trt, flavour, opened, opened.manifest.engines[0], gpu, precheck=precheck)
        except EngineRefused as exc:
            if "compute capability 9.0" not in str(exc) or "not supported by TensorRT-RTX" not in str(exc):
                raise AssertionError(f"refused, but not in our words: {exc}") from exc
            out["precheck" if precheck else "tensorrt_deserialize"] = str(exc)
            continue
        raise AssertionError(f"engine loaded on compute capability {gpu.cc} (precheck={precheck})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--trt", default="present", help="whether TensorRT-RTX's library was carried")
    args = ap.parse_args()
    from vla_edge.families.pi05.synth import synth_pack
    from vla_edge.targets.gpu.facts import probe

    work = Path("/tmp/gpu_verify_work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    tiny = synth_pack(work / "tiny", size="tiny", seed=0)
    result: dict = {"facts": probe().to_dict()}
    step(result, "cuda_vs_reference", lambda: compare(tiny, "cuda"))
    step(result, "cuda_vs_reference_graph_per_step", lambda: compare(tiny, "cuda", expert_graph="step"))
    tiny_q4 = work / "tiny-q4_k_m"
    step(result, "quantize_tiny_q4_k_m", lambda: quantize(tiny, tiny_q4, "q4_k_m"))
    step(result, "cuda_vs_reference_q4_k_m", lambda: compare(tiny_q4, "cuda"))
    step(result, "cuda_f16_weights_vs_reference_q4_k_m", lambda: compare(tiny_q4, "cuda", device_weights="f16"))
    step(result, "gb10_unavailable_on_h200", lambda: gb10_unavailable(tiny))
    step(result, "gb10_development_fallback", lambda: dev_fallback(tiny))
    if args.trt == "present":
        step(result, "tensorrt_rtx_refuses_cc_9_0", lambda: engine_refusal(tiny, work))
    else:
        result["tensorrt_rtx_refuses_cc_9_0"] = {"ok": False, "error": f"not run: TensorRT-RTX library {args.trt} "
                                                 "(see docs/gpu.md: parts 1 and 2 travel in a first call)"}
    Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    failed = [k for k, v in result.items() if isinstance(v, dict) and v.get("ok") is False]
    print("FAILED: " + ", ".join(failed) if failed else "all GPU target checks passed", flush=True)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
