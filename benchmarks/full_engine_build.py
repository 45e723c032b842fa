"""Full-size pi0.5 on a machine without a GPU: synthesise the pack, export it to ONNX, build
TensorRT-RTX engines (gb10, compute capability 12.1) into it. Reports wall time and peak RSS of
each step (each runs as its own `vla-edge` process, measured with wait4) as JSON, with peak RSS as
a ratio of the pack's weights file measured in the same run. Not part of CI: it needs ~14 GB of
free memory headroom and ~25 GB of disk.

Usage: python benchmarks/full_engine_build.py [--work DIR] [--precision fp16] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

MIN_FREE_GIB = 12


def run_step(name: str, args: list[str]) -> dict:
    """One vla-edge command; its wall time and peak RSS (its own, from the kernel's rusage)."""
    cmd = [sys.executable, "-m", "vla_edge.cli.main", *args]
    print(f"== {name}: {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    step = {"step": name, "args": args, "wall_s": round(wall, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
            "exit_code": proc.returncode}
    print(json.dumps(step), flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    return step


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/vla_full_engines")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--json", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the pack and export afterwards")
    args = ap.parse_args()
    free_gib = psutil.virtual_memory().available / 2**30
    result: dict = {"machine": {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                                "available_gib_at_start": round(free_gib, 1)}}
    if free_gib < MIN_FREE_GIB:
        result["skipped"] = f"only {free_gib:.1f} GiB available, below {MIN_FREE_GIB} GiB"
        print(json.dumps(result, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pack, export = work / "pack", work / f"onnx-{args.precision}"
    steps = []
    try:
        if not pack.exists():
            steps.append(run_step("synth", ["pack", "synth", "--size", "full", "--out", str(pack)]))
        weights = (pack / "pi05.gguf").stat().st_size
        steps.append(run_step("export-onnx", ["pack", "export-onnx", str(pack), "--out", str(export), "--precision",
                                              args.precision, "--no-check", "--overwrite"]))
        result["export_bytes"] = dir_bytes(export)
        shutil.rmtree(export)  # build-engine makes its own export inside the pack's staging folder
        steps.append(run_step("build-engine", ["pack", "build-engine", str(pack), "--target", "gb10", "--precision",
                                               args.precision, "--no-check"]))
        result["engine_bytes"] = dir_bytes(pack / "engines")
        result["weights_bytes"] = weights
        for s in steps:
            s["peak_rss_over_weights"] = round(s["peak_rss_gib"] * 2**30 / weights, 3)
    finally:
        result["steps"] = steps
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
