"""`vla-edge pack quantize SRC --recipe NAME --out DST [--calib CALIB]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .pack_cmd import byte_progress, console, pack_app


def quantize(
    src: Annotated[Path, typer.Argument(help="Pack to re-quantise")],
    recipe: Annotated[str, typer.Option(help="f16, q8_0, q4_k_m, actquant-3.97, or w4a4 (needs --calib; see "
                                                 "docs/quantize.md)")],
    out: Annotated[Path, typer.Option("--out", help="Directory to create")],
    golden: Annotated[Optional[bool], typer.Option("--golden/--no-golden",
                                                    help="Refresh the golden output (default: if SRC has one)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="`vla-edge calibrate` file of SRC: its importance "
                                                                   "matrix weights the K-quant error (imatrix); w4a4: its per-step "
                                                                   "statistics give the activation scale tables")] = None,
) -> None:
    """Re-quantise every tensor with ggml's own quantisers; the result is a complete, verified pack."""
    from ..calibration.w4a4_recipe import RECIPE as W4A4_RECIPE
    from ..packs.quantize import planned_bytes, quantize_pack
    from ..packs.recipes import require_recipe

    if recipe == W4A4_RECIPE:
        _quantize_w4a4(src, calib, out, overwrite, golden)
        return
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


def _quantize_w4a4(src: Path, calib: Optional[Path], out: Path, overwrite: bool, golden: Optional[bool]) -> None:
    from ..calibration.w4a4_recipe import build_w4a4_pack
    from ..errors import ConfigError
    from ..packs.pack import Pack

    if calib is None:
        raise ConfigError("--calib", "the w4a4 recipe needs a `vla-edge calibrate` file of SRC: its per-flow-step "
                                     "statistics give the static activation scale tables")
    path = build_w4a4_pack(src, calib, out, overwrite=overwrite, golden=golden)
    w4 = Pack.open(path, check="size").manifest.quantization
    console.print(f"wrote pack [bold]{path}[/bold]: {len(w4.w4a4.layers)} expert layers W4A4 with per-step activation "
                  f"scales from {calib}, {w4.bits_per_weight:.2f} bits per weight overall; runs on the reference target")


def register(app: typer.Typer) -> None:
    pack_app.command("quantize")(quantize)
