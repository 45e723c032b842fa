"""`vla-edge pack export-onnx SRC --out DIR` and `vla-edge pack build-engine PACK --target gb10|orin`:
a pack as ONNX graphs, and TensorRT engines built from them into the pack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .pack_cmd import console, pack_app


def export_onnx(
    src: Annotated[str, typer.Argument(help="Pack directory, or 'demo'")],
    out: Annotated[Path, typer.Option("--out", help="Directory to create (vision/prefix/expert .onnx)")],
    max_images: Annotated[Optional[int], typer.Option(help="Most cameras per observation (default: the pack's slots)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
    precision: Annotated[str, typer.Option(help="fp32 (reference arithmetic), fp16 or bf16 (matrix products in "
                                           "that type, the pack's quantised weights as INT8/INT4 Q/DQ)")] = "fp32",
    check: Annotated[bool, typer.Option(help="Reproduce the golden chunk with onnxruntime before keeping the export")] = True,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="`vla-edge calibrate` file of SRC: non-sensitive "
                                                  "matmuls become INT8 W8A8 explicit Q/DQ (fp32 only)")] = None,
) -> None:
    """Export the model as ONNX graphs (the input of TensorRT engine builds), checked against the golden chunk."""
    from ..packs.demo import resolve_pack
    from ..targets.onnx.export import write_export

    d = write_export(resolve_pack(src), out, max_images=max_images, overwrite=overwrite, precision=precision, check=check,
                     calib=calib)
    verdict = (f"golden chunk reproduced by onnxruntime, rel-L2 {d['golden_rel_l2']:.1e}" if d["golden_checked"] else
               "golden chunk not checked (" + ("--no-check" if not check else "no golden in the pack, or a bf16 graph "
                                               "onnxruntime cannot run") + ")")
    console.print(f"wrote {out}: {', '.join(d['files'].values())} ({d['precision']}, opset {d['opset']}, up to "
                  f"{d['max_positions']} positions); {verdict}")


def build_engine(
    pack: Annotated[str, typer.Argument(help="Pack directory (engines are stored in it), or 'demo'")],
    target: Annotated[str, typer.Option(help="gb10 (TensorRT-RTX, builds on any machine) or orin (TensorRT 10, "
                                        "builds on the Orin)")],
    precision: Annotated[Optional[list[str]], typer.Option(help="fp16 / bf16, repeatable (default: both); the "
                                                           "pack's quantised weights stay INT8/INT4")] = None,
    workspace_gb: Annotated[float, typer.Option(help="TensorRT builder workspace limit")] = 4.0,
    max_images: Annotated[Optional[int], typer.Option(help="Most cameras per observation (default: the pack's slots)")] = None,
    check: Annotated[bool, typer.Option(help="Check each export on the golden chunk with onnxruntime first")] = True,
) -> None:
    """Build TensorRT engines from the pack's ONNX export and store them in the pack (atomically)."""
    from ..packs.demo import resolve_pack
    from ..targets.gpu.engine_build import build_pack_engines

    sets = build_pack_engines(resolve_pack(pack), target, tuple(precision) if precision else None, workspace_gb,
                              max_images, check, log=console.print)
    for s in sets:
        console.print(f"{target} {s.precision}: {', '.join(f.path for f in s.files.values())} ({s.runtime} "
                      f"{s.runtime_version}, compute capability {s.compute_capability})")


def register(app: typer.Typer) -> None:
    pack_app.command("export-onnx")(export_onnx)
    pack_app.command("build-engine")(build_engine)
