"""`vla-edge robot export-filter`: a robot's safety-filter configuration for C/C++ programs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def export_filter(
    robot: Annotated[Optional[str], typer.Argument(help="Registry robot name (ur3, arx5, ...)")] = None,
    robot_config: Annotated[Optional[Path], typer.Option(help="Robot YAML overlay instead of a name")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write here instead of stdout")] = None,
) -> None:
    """Write the limits the safety filter enforces for ROBOT as the text file vla_edge_safety.h users
    read into a vla_edge_filter_config (docs/embedding.md)."""
    from ..robots.safety.export import filter_config_text
    from ..run.session import resolve_robot_config

    text = filter_config_text(resolve_robot_config(robot, robot_config))
    if out is None:
        typer.echo(text, nl=False)
        return
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)  # never a partial file
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Robot configuration tools.", no_args_is_help=True)
    group.command("export-filter")(export_filter)
    app.add_typer(group, name="robot")
