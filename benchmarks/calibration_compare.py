"""Imatrix-calibrated vs uncalibrated quantised packs, against their parent, on held-out observations.

    # packs already made (e.g. full size, where each step takes minutes):
    python benchmarks/calibration_compare.py packs --parent P --calib CALIB.npz \\
        --variant q4_k_m=P_Q4 --variant q4_k_m+calib=P_Q4_CAL ... [--target x86] [--product-error] --json OUT
    # end to end on tiny packs of several weight seeds (synth, calibrate, quantize, compare):
    python benchmarks/calibration_compare.py tiny --obs OBS_DIR --seeds 0 1 2 --json OUT

Every variant is compared with the parent on the same held-out observations (those the
calibration file kept aside) and the same flow noise; the parent's chunks are computed once in
the same run. For each recipe the ratio calibrated / uncalibrated of the mean chunk rel-L2 is
printed (< 1: calibration helps).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from vla_edge.packs.compare import chunk_errors, recorded_inputs
from vla_edge.policy import load_policy

RECIPES = ("q4_k_m", "actquant-3.97")


def compare_variants(parent: Path, calib: Path, variants: dict[str, Path], target: str) -> dict[str, Any]:
    """Chunk errors of each variant against `parent` on the calibration's held-out observations."""
    base = load_policy(parent, target=target, check="size")
    inputs, ids = recorded_inputs(base, calib)
    t0 = time.perf_counter()
    reference = [base.infer(obs, noise=noise).actions for obs, noise in inputs]
    base.close()
    names, units = base.info.action_names, base.info.action_units
    results: dict[str, Any] = {"parent": {"pack": str(parent), "seconds": time.perf_counter() - t0}}
    for name, path in variants.items():
        policy = load_policy(path, target=target, check="size")
        t0 = time.perf_counter()
        chunks = [policy.infer(obs, noise=noise).actions for obs, noise in inputs]
        results[name] = {"pack": str(path), "bits_per_weight": policy.info.bits_per_weight,
                         **chunk_errors(chunks, reference, names, units), "seconds": time.perf_counter() - t0}
        policy.close()
        print(f"{name:28s} rel-L2 mean {results[name]['rel_l2']['mean']:.4e} max {results[name]['rel_l2']['max']:.4e}"
              f"  first-action L2 mean {results[name]['first_action_l2']['mean']:.4e}", flush=True)
    ratios = {r: results[f"{r}+calib"]["rel_l2"]["mean"] / results[r]["rel_l2"]["mean"]
              for r in RECIPES if r in results and f"{r}+calib" in results}
    for recipe, ratio in ratios.items():
        print(f"{recipe}: calibrated / uncalibrated mean rel-L2 = {ratio:.3f}")
    return {"target": target, "held_out_ids": ids, "variants": results, "ratio_calibrated_over_plain": ratios}


def held_out_product_errors(parent: Path, calib: Path, variants: dict[str, Path]) -> dict[str, Any]:
    """The K-quant tensors' product error (vla_edge.calibration.product_error) on the calibration's
    held-out observations, 16 rows sampled per product call; ratio calibrated / uncalibrated per
    recipe, in total and per part of the model (< 1: the imatrix lowers the error of the layers'
    outputs on observations it was not fitted to)."""
    from vla_edge.calibration.product_error import product_errors

    policy = load_policy(parent, target="x86", check="size")
    inputs, _ = recorded_inputs(policy, calib)
    result = product_errors(policy, inputs, variants, rows_per_call=16)
    policy.close()
    out = result["variants"]
    ratios = {r: {"total": out[f"{r}+calib"]["total"] / out[r]["total"],
                  **{g: out[f"{r}+calib"]["by_part"][g] / out[r]["by_part"][g] for g in out[r]["by_part"]}}
              for r in RECIPES if r in out and f"{r}+calib" in out}
    for recipe, ratio in ratios.items():
        print(f"{recipe}: held-out product error calibrated / uncalibrated = "
              + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()), flush=True)
    return {"tensors": len(result["measured"]), "rows_per_call": result["rows_per_call"], "variants": out,
            "ratio_calibrated_over_plain": ratios}


def tiny_end_to_end(obs_dir: Path, seeds: list[int], target: str) -> dict[str, Any]:
    from vla_edge.calibration.calibrate import calibrate
    from vla_edge.families.pi05.synth import synth_pack
    from vla_edge.packs.quantize import quantize_pack

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            root = Path(tmp) / f"seed{seed}"
            parent = synth_pack(root / "parent", size="tiny", seed=seed, golden=False)
            calib = root / "calib.npz"
            calibrate(parent, [obs_dir], calib, held_out=0.25, seed=seed)
            variants = {}
            for recipe in RECIPES:
                variants[recipe] = quantize_pack(parent, recipe, root / recipe, golden=False)
                variants[f"{recipe}+calib"] = quantize_pack(parent, recipe, root / f"{recipe}-cal", golden=False,
                                                            calib=calib)
            print(f"-- tiny pack, weight seed {seed}")
            out[f"seed_{seed}"] = compare_variants(parent, calib, variants, target)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("packs")
    p.add_argument("--parent", type=Path, required=True)
    p.add_argument("--calib", type=Path, required=True)
    p.add_argument("--variant", action="append", required=True, help="NAME=PACK_DIR")
    p.add_argument("--product-error", action="store_true",
                   help="also the K-quant tensors' product error on the held-out observations' activations")
    t = sub.add_parser("tiny")
    t.add_argument("--obs", type=Path, required=True, help="observation folder or run directory")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    for s in (p, t):
        s.add_argument("--target", default="x86")
        s.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.mode == "packs":
        variants = dict(v.split("=", 1) for v in args.variant)
        paths = {k: Path(v) for k, v in variants.items()}
        result = compare_variants(args.parent, args.calib, paths, args.target)
        result["calibration"] = str(args.calib)
        if args.product_error:
            result["held_out_product_error"] = held_out_product_errors(args.parent, args.calib, paths)
    else:
        result = {"tiny": tiny_end_to_end(args.obs, args.seeds, args.target), "observations": str(args.obs)}
    result["host"] = {"machine": platform.machine(), "python": platform.python_version()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
