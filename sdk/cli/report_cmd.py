"""`vla-edge report RUN_DIR [RUN_DIR ...]`: a shadow-trial report with readiness checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError

console = Console()


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories written by `vla-edge run`")],
    out: Annotated[Optional[Path], typer.Option(help="Report folder (default: RUN_DIR/report for one run)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing report folder")] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="PNG plots (needs vla-edge[report])")] = True,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any readiness check fails")] = False,
    min_coverage: Annotated[float, typer.Option(help="Least share of ticks with a policy target")] = 0.95,
    max_interventions: Annotated[float, typer.Option(help="Most share of target ticks the filter changed")] = 0.01,
    max_late_ticks: Annotated[float, typer.Option(help="Most share of ticks started a period late")] = 0.001,
    max_chunk_age: Annotated[float, typer.Option(help="Most p95 chunk age / chunk duration")] = 0.5,
    max_tracking_error: Annotated[Optional[float], typer.Option(
        help="Most p95 |policy - measured| in rad (shadow: vs the operator); unset: reported, not judged")] = None,
) -> None:
    """Shadow-trial report: timing, coverage, safety-filter activity and tracking per run, with readiness checks."""
    from ..report import Thresholds, write_report

    if out is None:
        if len(run_dirs) != 1:
            raise ConfigError("--out", f"{len(run_dirs)} run directories given; name the report folder with --out")
        out = run_dirs[0] / "report"
    thresholds = Thresholds(min_coverage, max_interventions, max_late_ticks, max_chunk_age, max_tracking_error)
    result = write_report(run_dirs, out, thresholds, plots=plots, force=force)
    table = Table(title=f"shadow-trial report: {result['verdict']}")
    for col in ("run", "check", "value", "threshold", "result"):
        table.add_column(col)
    for run in result["runs"]:
        for check in run["checks"]:
            value = check["value"]
            shown = f"{value:.3g}" if isinstance(value, float) else ("–" if value is None else str(value))
            passed = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[dim]not evaluated[/dim]"}[check["passed"]]
            table.add_row(run["name"], check["name"], shown, check["threshold"], passed)
    console.print(table)
    console.print(f"written: {out / 'report.md'}, {out / 'report.json'}" + ("" if plots else " (no plots)"))
    if strict and result["verdict"].startswith("NOT READY"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
