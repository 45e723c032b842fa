"""`vla-edge doctor`: what will and will not work on this machine, and why.

Exit code 0 when the requested target (and robot, if named) can run here, 1 when not, 2 for bad
input (unknown robot, invalid robot file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "info": "cyan"}


def doctor(
    target: Annotated[str, typer.Option(help="Execution target to check (reference, x86, ...)")] = "reference",
    robot: Annotated[Optional[str], typer.Option(help="Robot name to check (e.g. ur3, arx5, ur3-sim)")] = None,
    robot_config: Annotated[Optional[Path], typer.Option(help="Robot YAML overlay to check (host, CAN interface)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a robot or camera to answer")] = 2.0,
) -> None:
    """Check CPU/native build, GPUs, TensorRT, health monitors, target, robot reachability and cameras."""
    from ..health.doctor import run_doctor
    from ..run.session import resolve_robot_config

    if not 0 < timeout <= 60:
        raise ConfigError("--timeout", f"expected seconds in (0, 60], got {timeout}")
    cfg = resolve_robot_config(robot, robot_config) if (robot or robot_config) else None
    report = run_doctor(target, cfg, timeout)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        table = Table(title=f"vla-edge doctor (target {target}" + (f", robot {cfg.name})" if cfg else ")"))
        table.add_column("check")
        table.add_column("status")
        table.add_column("finding", overflow="fold")
        for c in report.checks:
            table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status}[/{_STYLE[c.status]}]", escape(c.summary))
        console = Console(soft_wrap=False)
        console.print(table)
        console.print(f"[{'green' if report.can_run else 'red'}]{escape(report.verdict)}[/]", highlight=False,
                      soft_wrap=True)
    if not report.can_run:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
