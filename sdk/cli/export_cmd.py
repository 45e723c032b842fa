"""`vla-edge pack export-onnx SRC --out DIR` and `vla-edge pack build-engine EXPORT --out DIR`:
a pack as ONNX graphs, then as TensorRT engines built from them."""

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
) -> None:
    """Export the model as ONNX graphs (the input of TensorRT engine builds), checked against the golden chunk."""
    from ..packs.demo import resolve_pack
    from ..targets.onnx.export import write_export

    d = write_export(resolve_pack(src), out, max_images=max_images, overwrite=overwrite)
    check = "no golden output in the pack to check" if d["golden_rel_l2"] is None else \
        f"golden chunk reproduced by onnxruntime, rel-L2 {d['golden_rel_l2']:.1e}"
    console.print(f"wrote {out}: {', '.join(d['files'].values())} (opset {d['opset']}, up to {d['max_positions']} "
                  f"positions); {check}")


def build_engine(
    export: Annotated[Path, typer.Argument(help="Directory written by `vla-edge pack export-onnx`")],
    out: Annotated[Path, typer.Option("--out", help="Directory to create (vision/prefix/expert .engine)")],
    precision: Annotated[str, typer.Option(help="fp16 or fp32")] = "fp16",
    workspace_gb: Annotated[float, typer.Option(help="TensorRT builder workspace limit")] = 4.0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
) -> None:
    """Build TensorRT engines from an ONNX export (on the Jetson/GPU that will run them; needs TensorRT)."""
    from ..targets.tensorrt.engine_build import build_engines

    summary = build_engines(export, out, precision=precision, workspace_gb=workspace_gb, overwrite=overwrite)
    console.print(f"wrote {out}: {', '.join(summary['engines'].values())} (TensorRT {summary['tensorrt']}, "
                  f"{summary['precision']})")


def register(app: typer.Typer) -> None:
    pack_app.command("export-onnx")(export_onnx)
    pack_app.command("build-engine")(build_engine)
