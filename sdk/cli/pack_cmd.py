"""`vla-edge pack synth|inspect|verify` (quantize/import/compare register onto `pack_app` too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

pack_app = typer.Typer(help="Create, inspect and verify packs.", no_args_is_help=True)
console = Console()


def byte_progress(description: str, total: int) -> Progress:
    return Progress(TextColumn(f"[bold]{description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                    TextColumn("{task.description}"), console=Console(stderr=True), transient=False)


@pack_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to create")],
    family: Annotated[str, typer.Option(help="Model family")] = "pi05",
    size: Annotated[str, typer.Option(help="tiny (tests) or full (pi0.5-size, ~3.4B params)")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed; same seed -> byte-identical pack")] = 0,
    dtype: Annotated[Optional[str], typer.Option(help="F32 or F16 for matrices (default: F32 tiny, F16 full)")] = None,
    golden: Annotated[Optional[bool], typer.Option("--golden/--no-golden", help="Record a golden output (default: tiny only)")] = None,
    robot: Annotated[str, typer.Option(help="Robot whose joints/cameras the pack's spaces follow, or libero (LIBERO's end-effector spaces)")] = "ur3",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
) -> None:
    """Write a deterministic random-weight pack (weights, tokenizer, norm stats, golden)."""
    from ..errors import ConfigError
    from ..families import get_family
    from ..families.pi05.config import VARIANTS
    from ..families.pi05.synth import synth_pack, weight_bytes

    get_family(family)
    if size not in VARIANTS:
        raise ConfigError("--size", f"expected one of {sorted(VARIANTS)}, got '{size}'")
    if dtype is not None and dtype.upper() not in ("F32", "F16"):
        raise ConfigError("--dtype", f"expected F32 or F16, got '{dtype}'")
    total = weight_bytes(size, dtype)
    with byte_progress("synth", total) as progress:
        task = progress.add_task("", total=total)
        path = synth_pack(out, size=size, seed=seed, dtype=dtype, overwrite=overwrite, golden=golden, robot=robot,
                          on_tensor=lambda name, n: progress.update(task, advance=n, description=name))
    console.print(f"wrote pack [bold]{path}[/bold]")


@pack_app.command("inspect")
def inspect(
    pack: Annotated[str, typer.Argument(help="Pack directory, or 'demo'")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Show what a pack contains: family, quantisation per group, spaces, cameras, files."""
    from ..packs.demo import resolve_pack
    from ..packs.inspect import inspect_pack

    info = inspect_pack(resolve_pack(pack))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    console.print(f"[bold]{info['name']}[/bold]  family={info['family']} variant={info['variant']} "
                  f"recipe={info['quantization']['recipe']} bpw={info['quantization']['bits_per_weight']}")
    table = Table("group", "tensors", "params", "MB", "bits/weight", "types")
    for group, g in info["groups"].items():
        types = ", ".join(f"{t}×{n}" for t, n in info["quantization"]["groups"].get(group, {}).items())
        table.add_row(group, str(g["tensors"]), f"{g['params']:,}", f"{g['bytes'] / 1e6:.1f}",
                      str(g["bits_per_weight"]), types)
    console.print(table)
    console.print(f"targets: {', '.join(info['targets'])}")
    console.print(f"cameras: {info['cameras']} (required: {info['required_cameras']})")
    console.print(f"state: {info['state_space']['names']}")
    act = info["action_space"]
    console.print(f"actions: {act['names']} every {act['control_period_s']} s")
    console.print(f"golden: {info['golden'] or 'none'}")


@pack_app.command("verify")
def verify(
    pack: Annotated[str, typer.Argument(help="Pack directory, or 'demo'")],
    target: Annotated[Optional[str], typer.Option(help="Target to reproduce the golden output on")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check checksums, schema, every tensor's shape/type and the golden output. Exit 1 on any defect."""
    from ..packs.demo import resolve_pack
    from ..packs.verify import verify_pack

    findings = verify_pack(resolve_pack(pack), golden_target=target)
    errors = [f for f in findings if f.level == "error"]
    if as_json:
        typer.echo(json.dumps({"ok": not errors, "findings": [f.__dict__ for f in findings]}, indent=2))
    else:
        console.print(f"pack: {resolve_pack(pack)}")
        table = Table("", "where", "result")
        table.columns[1].overflow = "fold"
        style = {"ok": "[green]ok[/green]", "warning": "[yellow]warn[/yellow]", "error": "[red]FAIL[/red]"}
        for f in findings:
            table.add_row(style[f.level], f.where, f.message)
        console.print(table)
        console.print("[green]pack OK[/green]" if not errors else f"[red]{len(errors)} defect(s)[/red]")
    if errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(pack_app, name="pack")
