"""GPU machine: every ggml-CUDA form of the `cuda` target against the `reference` target on tiny packs.

The speed benchmark compares variants with each other; this says whether each form is right at all on
the GPU (flash attention with the F16 cache, the chunk graph, ggml's GELU/GeGLU kernels, fused matrices,
F16 device weights), on fresh random observations and noise, for the tiny pack and its q4_k_m twin.
Tolerance 5e-3 rel-L2 for every form (TF32 products and F16 K/V; the CPU forms measure ~1e-4). BF16
device weights (the default on GPUs with BF16 tensor cores) round every weight and product input to
an 8-bit mantissa; they measured 2.2e-3 on the q4_k_m twin (H100, 2026-12-06), inside the same bound.

Usage: python benchmarks/gpu_forms_check.py --tiny DIR --out OUT.json [--obs 3] [--target cuda] [--forms a,b]
Exits 1 when a form misses the tolerance or fails to load (every form is still tried and reported).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from vla_edge import load_policy
from vla_edge.packs.golden import random_observation
from vla_edge.packs.quantize import quantize_pack
from vla_edge.packs.writer import rel_l2

TOLERANCE = 5e-3
FORMS: dict[str, dict[str, str]] = {
    "default": {},  # on a discrete GPU with room: BF16 device weights (F16 before Ampere), fused matrices
    "stored": {"device_weights": "stored"},
    "stored_fused": {"device_weights": "stored", "fused_matrices": "true"},
    "f16_unfused": {"device_weights": "f16", "fused_matrices": "false"},
    "f16": {"device_weights": "f16"},
    "matmul": {"attention": "matmul"},
    "step": {"expert_graph": "step"},
    "unfused_ops": {"unfused_ops": "true"},
}


def check_pack(pack: Path, n_obs: int, target: str, forms: list[str]) -> dict[str, dict]:
    ref = load_policy(pack, target="reference")
    rng = np.random.default_rng()
    cases = []
    for _ in range(n_obs):
        cases.append((random_observation(ref.pack, rng), rng.standard_normal(ref.noise_shape).astype(np.float32)))
    expected = [ref.infer(obs, noise=noise).actions for obs, noise in cases]
    out: dict[str, dict] = {}
    for name in forms:
        options = FORMS[name]
        try:
            pol = load_policy(pack, target=target, **options)
            errs = [rel_l2(pol.infer(obs, noise=noise).actions, want) for (obs, noise), want in zip(cases, expected)]
            out[name] = {"rel_l2_max": max(errs), "ok": max(errs) <= TOLERANCE,
                         "attention": pol.info.backend.get("attention"),
                         "device_weights": pol.info.backend.get("device_weights"),
                         "expert_loop": pol._backend.describe().get("expert_loop")}  # after the chunks ran
            pol.close()
        except Exception as exc:  # noqa: BLE001 - each form is reported, the others still run
            out[name] = {"error": f"{type(exc).__name__}: {exc}", "ok": False}
        print(f"  {pack.name} {name}: {out[name]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--obs", type=int, default=3)
    ap.add_argument("--target", default="cuda", help="cuda; x86 only to dry-run this script (GPU-only forms are refused)")
    ap.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated subset of {', '.join(FORMS)}")
    args = ap.parse_args()
    forms = args.forms.split(",")
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        raise SystemExit(f"--forms: unknown {unknown}; known: {', '.join(FORMS)}")
    result = {"tolerance": TOLERANCE, "packs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        quantized = Path(tmp) / "tiny-q4_k_m"
        quantize_pack(args.tiny, "q4_k_m", quantized)
        for pack in (args.tiny, quantized):
            result["packs"][pack.name] = check_pack(pack, args.obs, args.target, forms)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    bad = [f"{p}/{f}" for p, forms in result["packs"].items() for f, r in forms.items() if not r["ok"]]
    print("forms check:", "all within tolerance" if not bad else f"FAILED {bad}", flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
