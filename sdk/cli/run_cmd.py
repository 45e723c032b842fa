"""`vla-edge run`: drive a robot with a policy — in shadow mode unless --live is given and confirmed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from ..errors import ConfigError, VlaEdgeError

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _status_printer():
    """A one-line status on a terminal (rewritten in place), a plain line every ~5 s otherwise."""
    tty = sys.stderr.isatty()
    last: dict[str, Any] = {"t": -1e9, "health": "nominal"}

    def show(s: dict[str, Any]) -> None:
        if s["health"] != last["health"]:  # warm and worse are never silent: own line, with the cause
            last["health"] = s["health"]
            sys.stderr.write(("\n" if tty else "") + f"health: {s['health']}"
                             + (f" ({s['health_reason']})" if s.get("health_reason") else "") + "\n")
        p50 = s["inference_p50_ms"]
        line = (f"{'SHADOW' if s['shadow'] else 'LIVE'} t={s['t']:6.1f}s ticks={s['ticks']} chunks={s['chunks']} "
                f"infer_p50={'-' if p50 is None else f'{p50:.0f}ms'} interventions={s['interventions']} "
                f"held={s['held']} filter={s['filter']} health={s['health']}"
                + (" WATCHDOG" if s["watchdog"] else ""))
        if tty:
            sys.stderr.write("\r" + line[:160].ljust(120))
            sys.stderr.flush()
        elif s["t"] - last["t"] >= 5.0:
            last["t"] = s["t"]
            sys.stderr.write(line + "\n")

    return show


def _confirm_live(robot: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        _err.print("[red]refusing --live without a terminal to confirm on; pass --yes to confirm non-interactively[/red]")
        raise typer.Exit(2)
    if not typer.confirm(f"LIVE mode: the policy will move robot '{robot}'. Is the workspace clear and the e-stop in reach?"):
        _err.print("live run not confirmed; nothing moved")
        raise typer.Exit(2)


def run(
    robot: Annotated[Optional[str], typer.Option(help="Robot name (see robots docs), e.g. ur3-sim")] = None,
    target: Annotated[Optional[str], typer.Option(help="Execution target, or auto (default): the fastest that can run the pack here")] = None,
    pack: Annotated[Optional[str], typer.Option(help="Pack directory, or 'demo' (default)")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Instruction (default: the pack's default prompt)")] = None,
    duration: Annotated[Optional[float], typer.Option(help="Seconds to run (real seconds; sim time in fast sim)")] = None,
    live: Annotated[bool, typer.Option("--live/--shadow", help="Shadow (default): nothing can move. Live: moves the arm")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --live without a prompt")] = False,
    robot_config: Annotated[Optional[Path], typer.Option(help="Robot YAML overriding a registry robot's settings")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Run YAML with robot/loop/cameras/health sections")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run directory (default ./runs/<time>-<robot>)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Noise seed for reproducible chunks")] = None,
    camera: Annotated[Optional[list[str]], typer.Option(help="NAME=SPEC: device index, /dev/videoN or 'synthetic'")] = None,
    record_obs: Annotated[Optional[int], typer.Option("--record-obs", min=1, help="Store every N-th observation the "
                                                      "policy saw in <run>/observations/ (for `vla-edge calibrate`)")] = None,
    view: Annotated[Optional[str], typer.Option(
        "--view", help="Stream cameras, joint targets, commands and interventions to rerun: 'spawn' (start a "
                       "viewer), rerun+http://HOST:PORT/proxy, or FILE.rrd; off by default, never on the control "
                       "thread's path (pip install 'vla-edge[view]')")] = None,
) -> None:
    """Run a policy on a robot: cameras -> policy -> safety filter -> robot, logged to a run directory."""
    from ..run.cameras import parse_camera_spec
    from ..run.config import load_run_file, resolve_relative
    from ..run.session import RunRequest, execute, prepare

    file = load_run_file(config)
    cams = {str(k): str(v) for k, v in file.cameras.items()}
    for spec in camera or []:
        name, value = parse_camera_spec(spec)
        cams[name] = value
    if robot is None and robot_config is None and file.robot is None and file.robot_config is None:
        raise ConfigError("--robot", "name the robot (e.g. --robot ur3-sim) or give --robot-config FILE")
    req = RunRequest(
        robot=robot or file.robot,
        robot_config=robot_config or resolve_relative(config, file.robot_config),
        pack=pack or file.pack, target=target or file.target or "auto",
        prompt=prompt or file.prompt,
        duration_s=duration if duration is not None else (file.duration_s if file.duration_s is not None else 10.0),
        live=live, run_dir=run_dir, seed=seed, cameras=cams, health=file.health, view=view,
        loop=file.loop if record_obs is None else file.loop.model_copy(update={"record_obs_every": record_obs}),
    )
    if live:
        _confirm_live(req.robot or str(req.robot_config), yes)
    try:
        prepared = prepare(req)
    except KeyboardInterrupt:
        _err.print("\ninterrupted before the run started; nothing moved")
        raise typer.Exit(130) from None
    mode = "[bold red]LIVE: the arm will move[/bold red]" if live else \
        "[bold green]SHADOW MODE[/bold green]: policy and safety filter run, the arm cannot move (use --live to move it)"
    _err.print(mode)
    _err.print(f"robot {prepared.robot_config.name}, pack {prepared.policy.info.pack_name}, target {prepared.policy.target} "
               f"({prepared.policy.target_reason}), "
               f"run directory {prepared.rundir.path}")
    try:
        outcome = execute(prepared, on_status=_status_printer())
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        _err.print(f"interrupted: arm stopped; run directory {prepared.rundir.path}")
        raise typer.Exit(130) from None
    except VlaEdgeError as exc:  # during the run: not "bad input" (exit 2); the arm was stopped
        sys.stderr.write("\n")
        _err.print(f"[red]error during the run: {exc}[/red]; arm stopped; run directory {prepared.rundir.path}")
        raise typer.Exit(1) from None
    sys.stderr.write("\n")
    s = outcome.summary
    lat = s["inference_latency_ms"]["p50"]
    _err.print(f"run ended ({outcome.reason}{': ' + outcome.detail if outcome.detail else ''}): {s['ticks']} ticks, "
               f"{s['chunks']['received']} chunks, inference p50 "
               f"{'-' if lat is None else f'{lat:.0f} ms'}, {s['ticks_with_intervention']} ticks with interventions, "
               f"{s['commands_sent']} commands sent")
    for note in s.get("diagnosis", []):
        _err.print(f"note: {note}")
    _err.print(f"{_what_happened(prepared.rundir.path)}. Watch it: vla-edge report {prepared.rundir.path} "
               "(report.html with plots and, for simulators, video.mp4; readiness checks)")
    typer.echo(str(prepared.rundir.path))
    if outcome.reason in ("safety_stop", "error"):
        raise typer.Exit(1)


def _what_happened(run_dir: Path) -> str:
    """The run's one-line outcome from its logs (never fails the run: a log problem says so)."""
    from ..report.outcome import what_the_arm_did
    from ..report.rundata import load_run

    try:
        return what_the_arm_did(load_run(run_dir))
    except (VlaEdgeError, OSError, ValueError, KeyError) as exc:
        return f"the run's logs could not be summarised ({exc})"


def register(app: typer.Typer) -> None:
    app.command("run")(run)
