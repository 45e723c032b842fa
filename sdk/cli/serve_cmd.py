"""`vla-edge serve`: predictions over a websocket for robot software that drives the arm itself."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer
from rich.console import Console

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def serve(
    pack: Annotated[str, typer.Option(help="Pack directory, or 'demo'")] = "demo",
    target: Annotated[str, typer.Option(help="Execution target, or auto: the fastest that can run the pack here")] = "auto",
    host: Annotated[str, typer.Option(help="Address to listen on")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port (openpi's default is 8000; 0 picks a free one)")] = 8000,
    image: Annotated[Optional[list[str]], typer.Option(
        help="Flat requests: robot camera CAMERA is in request key KEY, as CAMERA=KEY (repeatable)")] = None,
    state_key: Annotated[str, typer.Option(help="Flat requests: key of the state vector")] = "observation/state",
    prompt_key: Annotated[str, typer.Option(help="Flat requests: key of the instruction")] = "prompt",
    prompt: Annotated[Optional[str], typer.Option(help="Instruction when a request has none (default: pack's)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Noise seed; a reset/episode_start restarts its sequence")] = None,
) -> None:
    """Serve a policy over a websocket (openpi protocol): observations in, action chunks out. No safety filter."""
    from ..packs.demo import resolve_pack
    from ..policy import load_policy
    from ..serve import KeyMap, PolicyServer
    from ..serve.server import SAFETY_NOTE

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    keys = KeyMap.parse(image or [], state_key, prompt_key)
    policy = load_policy(resolve_pack(pack), target=target, seed=seed)
    server = PolicyServer(policy, keys, default_prompt=prompt, host=host, port=port)
    bound = server.start()
    info = policy.info
    _err.print(f"serving pack '{info.pack_name}' ({info.quant_recipe}) on target {info.target} at ws://{host}:{bound} "
               f"(health: http://{host}:{bound}/healthz); cameras {sorted(set(info.cameras.values()))}, "
               f"state {len(info.state_names)}, chunk {info.horizon} x {len(info.action_names)}")
    _err.print(f"target {info.target}: {policy.target_reason}")
    _err.print(f"[yellow]{SAFETY_NOTE}[/yellow]")
    try:
        server.wait()
    except KeyboardInterrupt:
        _err.print(f"stopped after {server.served} chunk(s)")
    finally:
        policy.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
