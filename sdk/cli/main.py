"""`vla-edge` command line. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import VlaEdgeError

app = typer.Typer(
    name="vla-edge",
    help="Deploy quantized vision-language-action policies to edge targets and drive robots safely.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One line per command module; each exposes `register(app)`.
COMMAND_MODULES = [
    "vla_edge.cli.pack_cmd",
    "vla_edge.cli.quantize_cmd",
    "vla_edge.cli.calibrate_cmd",
    "vla_edge.cli.export_cmd",
    "vla_edge.cli.import_cmd",
    "vla_edge.cli.infer_cmd",
    "vla_edge.cli.bench_cmd",
    "vla_edge.cli.run_cmd",
    "vla_edge.cli.doctor_cmd",
    "vla_edge.cli.report_cmd",
    "vla_edge.cli.serve_cmd",
    "vla_edge.cli.eval_cmd",
    "vla_edge.cli.robot_cmd",
]

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Entry point: VlaEdgeError becomes a one-line message and exit code 2, never a traceback."""
    try:
        # standalone_mode=False returns typer.Exit codes instead of raising them
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except VlaEdgeError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
