"""`vla-edge eval`: closed-loop LIBERO task success, several packs on the same seeds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError

API_KEY_ENV = "VLA_EDGE_API_KEY"  # the variable `vla-edge serve` reads its key from


def _task_ids(values: list[str]) -> list[int] | None:
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                ids.append(int(part))
            except ValueError as exc:
                raise ConfigError("--tasks", f"expected task ids (integers, comma-separated), got {part!r}") from exc
    return ids or None


def _server_key(key_file: Path | None) -> str | None:
    """The policy server's API key: the first line of --api-key-file, else $VLA_EDGE_API_KEY (never
    a command-line argument: those are in every user's process list). Unlike `vla-edge serve`, no
    minimum length: the server, maybe an openpi one, decides what a key is."""
    if key_file is None:
        value = os.environ.get(API_KEY_ENV, "").strip()
        source = f"${API_KEY_ENV}"
    else:
        try:
            lines = key_file.read_text().strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--api-key-file {key_file}", f"cannot read the key ({exc})") from exc
        value, source = (lines[0].strip() if lines else ""), f"--api-key-file {key_file}"
        if not value:
            raise ConfigError(source, "the file is empty; expected the server's API key on its first line")
    if value and any(ch.isspace() or not ch.isprintable() or not ch.isascii() for ch in value):
        raise ConfigError(source, "the API key must be printable ASCII without spaces (it travels in an HTTP header)")
    return value or None


def eval_command(
    pack: Annotated[Optional[list[str]], typer.Option("--pack", help="Pack directory, 'demo', or ws://host:port (openpi server); repeat to compare, the first is the parent")] = None,
    suite: Annotated[str, typer.Option(help="libero_spatial, libero_object, libero_goal, libero_10 or libero_90")] = "libero_spatial",
    out: Annotated[Optional[Path], typer.Option(help="Output directory (episodes.jsonl, summary.json, videos/); re-running resumes")] = None,
    target: Annotated[str, typer.Option(help="Execution target for packs (auto: the fastest here)")] = "auto",
    tasks: Annotated[Optional[list[str]], typer.Option(help="Task ids of the suite (comma-separated or repeated; default all)")] = None,
    episodes: Annotated[int, typer.Option(help="Episodes per task (LIBERO ships 50 initial states)")] = 50,
    seed: Annotated[int, typer.Option(help="Base seed: simulator seed + episode, policy noise keyed by (seed, task, episode)")] = 7,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine (each with its own policies and simulator)")] = 1,
    video: Annotated[bool, typer.Option("--video", help="Write one MP4 per episode (agentview | wrist)")] = False,
    replan_steps: Annotated[int, typer.Option(help="Actions executed from each chunk before the next inference")] = 5,
    max_steps: Annotated[Optional[int], typer.Option(help="Policy steps per episode (default: the suite's, as openpi)")] = None,
    num_steps_wait: Annotated[int, typer.Option(help="Dummy actions at the start while objects settle")] = 10,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals")] = 0.95,
    sim_python: Annotated[Optional[str], typer.Option(help="Python of an environment with LIBERO (default: the one --setup-sim builds)")] = None,
    setup_sim: Annotated[bool, typer.Option("--setup-sim", help="Build the LIBERO simulator's own Python environment from PyPI and exit")] = False,
    api_key_file: Annotated[Optional[Path], typer.Option(help="API key of a ws:// / wss:// policy server (first line of the file; default $VLA_EDGE_API_KEY)")] = None,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", help="Spread episodes over a Ray cluster (extra 'ray') on --workers actors: 'local' "
        "(Ray's default: $RAY_ADDRESS, a cluster started here, else a new local instance), 'auto', HOST:PORT or "
        "ray://HOST:10001")] = None,
    ray_gpus: Annotated[float, typer.Option(help="GPUs per Ray actor (e.g. 1 for --target cuda; 0.5 shares one GPU between two)")] = 0.0,
    ray_cpus: Annotated[float, typer.Option(help="CPUs per Ray actor")] = 1.0,
) -> None:
    """Closed-loop task success in the LIBERO simulator, with openpi's conventions; several packs
    run the same task instances and seeds and are compared pairwise against the first."""
    from ..eval.plan import EvalSettings
    from ..eval.ray_runner import RaySettings
    from ..eval.runner import EvalRequest, run_eval
    from ..eval.sim_setup import build_environment

    if setup_sim:
        python = build_environment(log=lambda line: typer.echo(line, err=True))
        typer.echo(f"LIBERO simulator environment ready: {python}")
        return
    if out is None:
        raise ConfigError("--out", "give an output directory (an existing one resumes its evaluation)")
    if not 0.0 < confidence < 1.0:
        raise ConfigError("--confidence", f"expected a level in (0, 1), got {confidence}")
    settings = EvalSettings(suite=suite, episodes=episodes, seed=seed, replan_steps=replan_steps,
                            num_steps_wait=num_steps_wait, max_steps=max_steps)
    req = EvalRequest(packs=list(pack or []), settings=settings, out=out, target=target, tasks=_task_ids(tasks or []),
                      workers=workers, video=video, confidence=confidence, api_key=_server_key(api_key_file),
                      sim_python=sim_python,
                      ray=None if ray is None else RaySettings(ray, cpus_per_worker=ray_cpus, gpus_per_worker=ray_gpus))
    outcome = run_eval(req)
    typer.echo(f"{outcome.ran} episode(s) run, {outcome.skipped} resumed; results in {outcome.out}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
