"""W4A4 packs made from a float pack + its calibration (`pack quantize --recipe w4a4 --calib`),
against their parent on the calibration's held-out observations.

    # end to end on tiny packs of several weight seeds (synth, calibrate, build, compare):
    python benchmarks/calibration_w4a4.py tiny --obs OBS_DIR --seeds 0 1 2 --json OUT
    # a given parent + calibration (e.g. full size; the W4A4 packs run on the reference target):
    python benchmarks/calibration_w4a4.py packs --parent P --calib CALIB.npz --work DIR \\
        [--parent-target x86] [--variants w4a4 w4a4-per-token] --json OUT

Variants, all from the same parent and calibration: `w4a4` (the recipe: static per-step tables),
`w4a4-per-token` (same rotation and weights, dynamic per-token scales: the baseline the static
tables are measured against, ratio printed), `w4a4-clip-3.29` (tables clipped at the Gaussian
99.9th percentile instead of the MSE optimum 2.37 sigma) and `w4a4-no-rotation` (identity
permutation and blocks). Each is compared with the parent on the same held-out observations and
flow noise; the parent's chunks are computed once in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from vla_edge.calibration.w4a4_recipe import build_w4a4_pack
from vla_edge.packs.compare import chunk_errors, recorded_inputs
from vla_edge.policy import load_policy

VARIANTS: dict[str, dict[str, Any]] = {
    "w4a4": {},
    "w4a4-per-token": {"act_scales": "per_token"},
    "w4a4-clip-3.29": {"clip": 3.29},
    "w4a4-no-rotation": {"rotate": False},
}


def build_variants(parent: Path, calib: Path, work: Path, names: list[str] | None = None) -> dict[str, Path]:
    out = {}
    for name in names or list(VARIANTS):
        options = VARIANTS[name]
        t0 = time.perf_counter()
        out[name] = build_w4a4_pack(parent, calib, work / name, golden=False, **options)
        print(f"built {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def compare(parent: Path, calib: Path, variants: dict[str, Path], parent_target: str) -> dict[str, Any]:
    """Chunk errors of every variant (reference target) against the parent on held-out inputs."""
    base = load_policy(parent, target=parent_target, check="size",
                       **({"cache_weights": False} if parent_target == "reference" else {}))
    inputs, ids = recorded_inputs(base, calib)
    t0 = time.perf_counter()
    reference = [base.infer(obs, noise=noise).actions for obs, noise in inputs]
    names, units = base.info.action_names, base.info.action_units
    base.close()
    results: dict[str, Any] = {"parent": {"pack": str(parent), "target": parent_target,
                                          "seconds": time.perf_counter() - t0}}
    for name, path in variants.items():
        policy = load_policy(path, target="reference", check="size", cache_weights=False)
        t0 = time.perf_counter()
        chunks = [policy.infer(obs, noise=noise).actions for obs, noise in inputs]
        results[name] = {"pack": str(path), "bits_per_weight": policy.info.bits_per_weight,
                         **chunk_errors(chunks, reference, names, units), "seconds": time.perf_counter() - t0}
        policy.close()
        print(f"{name:18s} rel-L2 mean {results[name]['rel_l2']['mean']:.4e} max {results[name]['rel_l2']['max']:.4e}"
              f"  first-action L2 mean {results[name]['first_action_l2']['mean']:.4e}", flush=True)
    dynamic = results["w4a4-per-token"]["rel_l2"]["mean"]
    ratios = {name: results[name]["rel_l2"]["mean"] / dynamic for name in variants if name != "w4a4-per-token"}
    for name, ratio in ratios.items():
        print(f"{name}: mean rel-L2 / per-token baseline = {ratio:.3f}")
    return {"w4a4_target": "reference", "held_out_ids": ids, "variants": results,
            "ratio_over_per_token": ratios}


def tiny_end_to_end(obs_dir: Path, seeds: list[int]) -> dict[str, Any]:
    from vla_edge.calibration.calibrate import calibrate
    from vla_edge.families.pi05.synth import synth_pack

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            root = Path(tmp) / f"seed{seed}"
            parent = synth_pack(root / "parent", size="tiny", seed=seed, golden=False)
            calib = root / "calib.npz"
            calibrate(parent, [obs_dir], calib, held_out=0.25, seed=seed)
            print(f"-- tiny pack, weight seed {seed}")
            out[f"seed_{seed}"] = compare(parent, calib, build_variants(parent, calib, root), "reference")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("packs")
    p.add_argument("--parent", type=Path, required=True)
    p.add_argument("--calib", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="directory for the W4A4 packs (created)")
    p.add_argument("--parent-target", default="reference")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                   help="which to build (full size: each is a whole pack on disk; w4a4-per-token is the baseline)")
    t = sub.add_parser("tiny")
    t.add_argument("--obs", type=Path, required=True, help="observation folder or run directory")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    for s in (p, t):
        s.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.mode == "packs":
        args.work.mkdir(parents=True, exist_ok=False)
        result = compare(args.parent, args.calib, build_variants(args.parent, args.calib, args.work, args.variants),
                         args.parent_target)
        result["calibration"] = str(args.calib)
    else:
        result = {"tiny": tiny_end_to_end(args.obs, args.seeds), "observations": str(args.obs)}
    result["host"] = {"machine": platform.machine(), "python": platform.python_version()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
