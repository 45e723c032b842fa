"""`vla-edge pack quantize SRC --recipe NAME --out DST [--calib CALIB]`."""

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
    calib: Annotated[Optional[Path], typer.Option("--calib", help="`vla-edge calibrate` file of SRC: its importance "
                                                                   "matrix weights the K-quant error (imatrix)")] = None,
) -> None:
    """Re-quantise every tensor with ggml's own quantisers; the result is a complete, verified pack."""
    from ..packs.quantize import planned_bytes, quantize_pack
    from ..packs.recipes import require_recipe

    require_recipe(recipe)
    total = planned_bytes(src, recipe)
    with byte_progress(f"quantize {recipe}", total) as progress:
        task = progress.add_task("", total=total)
        path = quantize_pack(src, recipe, out, overwrite=overwrite, golden=golden, calib=calib,
                             on_tensor=lambda name, n: progress.update(task, advance=n, description=name))
    from ..packs.pack import Pack

    q = Pack.open(path, check="size").manifest.quantization
    weighted = " with the importance matrix of " + str(calib) if calib else ""
    console.print(f"wrote pack [bold]{path}[/bold]{weighted}: {q.bits_per_weight:.2f} bits per weight, "
                  f"{len(q.exceptions)} tensors padded or on a fallback type (see pack.yaml quantization.exceptions)")


def register(app: typer.Typer) -> None:
    pack_app.command("quantize")(quantize)
