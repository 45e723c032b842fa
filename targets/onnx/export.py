"""`vla-edge pack export-onnx`: the graphs written atomically and checked before they are kept.

The export is moved into place only after onnxruntime has reproduced the pack's golden chunk
from the files just written (within the pack's own golden tolerance), so an export directory on
disk is always one that ran correctly here — the input a TensorRT engine build then trusts.
"""

from __future__ import annotations

import json
from pathlib import Path

from vla_edge.errors import PackError
from vla_edge.staging import atomic_dir

from .precision import ExportPrecision, require_precision

# rel-L2 to the golden chunk a reduced-precision export must stay within (the fp32 export uses the
# pack's own golden tolerance). Measured on the tiny packs: fp16 1.6e-4, fp16 + INT8 weights (q8_0
# pack) 4.3e-4, fp16 + INT4 weights (q4_k_m pack) 5.6e-3; the bound leaves room for other weights
# while still catching a wrong graph (a wrong op gives rel-L2 ~1).
REDUCED_PRECISION_BOUND = 5e-2
# onnxruntime's CPU provider has no bfloat16 MatMul, so a bf16 graph cannot be run here; its fp16
# twin (the same graph with another product type) is what gets checked.
NOT_RUNNABLE_ON_ORT = {"bf16"}


def check_golden(pack, export_dir: Path, precision: ExportPrecision, quantized: bool = False) -> float | None:
    """Run the pack's golden observation through onnxruntime on `export_dir`; the rel-L2 to the
    recorded chunk, or None when there is nothing to check (no golden, or a bf16 graph). Raises
    PackError when the export misses its bound: the caller then keeps nothing."""
    from vla_edge.packs.golden import load_golden
    from vla_edge.packs.writer import rel_l2
    from vla_edge.policy import load_policy

    golden = pack.manifest.golden
    if golden is None or precision.name in NOT_RUNNABLE_ON_ORT:
        return None
    obs, noise, expected = load_golden(pack.path("golden"))
    with load_policy(pack, target="onnx", onnx_dir=export_dir) as policy:
        err = rel_l2(policy.infer(obs, noise=noise).actions, expected)
    exact = precision.is_reference and not quantized  # W8A8 Q/DQ layers are held to the reduced-precision bound
    bound = golden.rel_l2_tolerance if exact else REDUCED_PRECISION_BOUND
    if not err <= bound:
        raise PackError(f"{export_dir} ({precision.name} onnx export)", f"golden chunk reproduced with rel-L2 {err:.2e}, "
                        f"above the bound {bound:.0e} for {precision.name}; export not kept")
    return err


def write_export(pack_dir: Path, out: Path, max_images: int | None = None, overwrite: bool = False,
                 precision: str = "fp32", check: bool = True, calib: Path | None = None) -> dict:
    """check=False skips the golden run (full-size packs on small machines: onnxruntime would hold
    the whole model); the description then says so. calib: a `vla-edge calibrate` file of this
    pack; its activation ranges make the non-sensitive matmuls W8A8 explicit Q/DQ (fp32 only)."""
    from vla_edge.packs.pack import Pack

    from .pi05_export import export_pi05

    export_precision = require_precision(precision)
    out = Path(out)
    if out.exists() and not overwrite:
        raise PackError(str(out), "output directory already exists (use --overwrite to replace it)")
    pack = Pack.open(pack_dir)
    act_scales = None
    if calib is not None:
        from vla_edge.calibration.scales import int8_activation_scales

        if not export_precision.is_reference:
            raise PackError("--calib", f"W8A8 Q/DQ is exported around fp32 graphs only, not {precision}")
        act_scales = int8_activation_scales(Path(calib), pack)
    with atomic_dir(out) as staging:
        description = export_pi05(pack, staging, max_images, export_precision, act_scales)
        if act_scales:
            description["activation_quantization"] = {"calibration": str(Path(calib).resolve()), "layers": len(act_scales),
                                                      "form": "int8 symmetric per tensor, percentile 99.99 / 127"}
        description["golden_rel_l2"] = check_golden(pack, staging, export_precision, bool(act_scales)) if check else None
        description["golden_checked"] = check and description["golden_rel_l2"] is not None
        (staging / "onnx_export.json").write_text(json.dumps(description, indent=1) + "\n")
    return description


def read_export_description(export_dir: Path) -> dict:
    """onnx_export.json of an export directory (what the onnx target and engine builds start from)."""
    description_file = Path(export_dir) / "onnx_export.json"
    if not description_file.is_file():
        raise PackError(str(description_file), "missing: not a directory written by `vla-edge pack export-onnx`")
    try:
        return json.loads(description_file.read_text())
    except json.JSONDecodeError as exc:
        raise PackError(str(description_file), f"not valid JSON ({exc.msg}); re-run `vla-edge pack export-onnx`") from exc
