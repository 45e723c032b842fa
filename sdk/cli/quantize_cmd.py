"""`vla-edge pack quantize SRC --recipe NAME --out DST` and `vla-edge pack export-onnx SRC --out DST`:
the two commands that turn a pack into another deployable form."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .pack_cmd import byte_progress, console, pack_app


def quantize(
    src: Annotated[Path, typer.Argument(help="Pack to re-quantise")],
    recipe: Annotated[str, typer.Option(help="f16, q8_0, q4_k_m or actquant-3.97 (see docs/quantize.md)")],
    out: Annotated[Path, typer.Option("--out", help="Directory to create")],
    golden: Annotated[Optional[bool], typer.Option("--golden/--no-golden",
                                                    help="Refresh the golden output (default: if SRC has one)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
) -> None:
    """Re-quantise every tensor with ggml's own quantisers; the result is a complete, verified pack."""
    from ..packs.quantize import planned_bytes, quantize_pack
    from ..packs.recipes import require_recipe

    require_recipe(recipe)
    total = planned_bytes(src, recipe)
    with byte_progress(f"quantize {recipe}", total) as progress:
        task = progress.add_task("", total=total)
        path = quantize_pack(src, recipe, out, overwrite=overwrite, golden=golden,
                             on_tensor=lambda name, n: progress.update(task, advance=n, description=name))
    from ..packs.pack import Pack

    q = Pack.open(path, check="size").manifest.quantization
    console.print(f"wrote pack [bold]{path}[/bold]: {q.bits_per_weight:.2f} bits per weight, "
                  f"{len(q.exceptions)} tensors padded or on a fallback type (see pack.yaml quantization.exceptions)")


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
    pack_app.command("quantize")(quantize)
    pack_app.command("export-onnx")(export_onnx)
    pack_app.command("build-engine")(build_engine)
