"""`vla-edge calibrate --pack P --from SOURCE... --out CALIB.npz`: activation statistics for quantisers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

_err = Console(stderr=True, highlight=False)


def calibrate(
    pack: Annotated[str, typer.Option("--pack", help="Pack to calibrate (directory, or 'demo')")],
    sources: Annotated[list[Path], typer.Option("--from", help="Run directory recorded with --record-obs, an "
                                                               "observation folder, or a LeRobot dataset (repeatable)")],
    out: Annotated[Path, typer.Option("--out", help="Calibration file to write (.npz)")],
    samples: Annotated[Optional[int], typer.Option(help="Use at most N observations for the statistics "
                                                        "(default: all not held out)")] = None,
    held_out: Annotated[float, typer.Option("--held-out", help="Fraction of observations kept aside for "
                                                                 "`pack compare --obs-from CALIB`")] = 0.25,
    target: Annotated[str, typer.Option(help="Where the pack runs: reference (exact float32 activations) or x86 (the native "
                                                  "graph's own activations)")] = "reference",
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and of each observation's flow noise")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing calibration file")] = False,
    camera: Annotated[Optional[list[str]], typer.Option("--camera", help="LeRobot datasets: CAMERA=KEY maps a pack "
                                                        "camera to an image feature (default observation.images."
                                                        "CAMERA; repeatable)")] = None,
    frames: Annotated[Optional[int], typer.Option(help="LeRobot datasets: frames taken from each, evenly spaced "
                                                       "(default 64)")] = None,
) -> None:
    """Run the pack on recorded observations and save per-tensor activation statistics (imatrix,
    absmax / percentile ranges, per flow step for the action expert) with the pack's identity."""
    from ..calibration.calibrate import calibrate as run_calibration
    from ..calibration.stats import spread_summary
    from ..packs.demo import resolve_pack

    calib = run_calibration(resolve_pack(pack), sources, out, samples=samples, held_out=held_out, seed=seed,
                            target=target, overwrite=overwrite, camera_map=_camera_map(camera or []), frames=frames,
                            on_sample=lambda sample_id: _err.print(f"  ran {sample_id}"))
    data = calib.header["data"]
    typer.echo(f"wrote {out}: {len(calib.tensors)} tensors, {len(data['calibration'])} observations, "
               f"{len(data['held_out'])} held out (compare on them: vla-edge pack compare A B --obs-from {out})")
    spread = spread_summary(calib.tensors)
    if spread:
        typer.echo(f"importance spread (loudest input channel / mean, per tensor): median {spread['median']:.1f}, "
                   f"max {spread['max']:.1f} ({spread['max_tensor']}); near 1 the imatrix has no channel to protect")


def _camera_map(pairs: list[str]) -> dict[str, str]:
    from ..errors import ConfigError

    mapping = {}
    for pair in pairs:
        name, sep, key = pair.partition("=")
        if not sep or not name or not key:
            raise ConfigError("--camera", f"expected CAMERA=KEY (e.g. base=observation.images.top), got '{pair}'")
        if name in mapping:
            raise ConfigError("--camera", f"camera '{name}' mapped twice")
        mapping[name] = key
    return mapping


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
