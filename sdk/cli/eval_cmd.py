"""`vla-edge eval`: closed-loop LIBERO task success, several packs on the same seeds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError


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
) -> None:
    """Closed-loop task success in the LIBERO simulator, with openpi's conventions; several packs
    run the same task instances and seeds and are compared pairwise against the first."""
    from ..eval.plan import EvalSettings
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
                      workers=workers, video=video, confidence=confidence, api_key=os.environ.get("VLA_EDGE_API_KEY"),
                      sim_python=sim_python)
    outcome = run_eval(req)
    typer.echo(f"{outcome.ran} episode(s) run, {outcome.skipped} resumed; results in {outcome.out}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
