"""`vla-edge infer`: one observation in, one action chunk out, from the shell."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError


def _parse_images(pairs: list[str]) -> dict[str, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    images = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ConfigError("--image", f"expected NAME=PATH, got '{pair}'")
        try:
            with Image.open(path) as img:
                images[name] = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise ConfigError(f"--image {name}", f"cannot read image '{path}': {exc}") from exc
    return images


def _parse_state(text: str) -> np.ndarray:
    try:
        return np.asarray([float(v) for v in text.replace(",", " ").split()], dtype=np.float32)
    except ValueError as exc:
        raise ConfigError("--state", f"expected comma-separated numbers, got '{text}'") from exc


def infer(
    pack: Annotated[str, typer.Option(help="Pack directory, or 'demo' for the built-in demo pack")] = "demo",
    target: Annotated[str, typer.Option(help="Execution target, or auto: the fastest that can run the pack here")] = "auto",
    image: Annotated[Optional[list[str]], typer.Option(help="Camera image NAME=PATH (repeatable)")] = None,
    state: Annotated[Optional[str], typer.Option(help="Robot state, comma-separated, robot units")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Instruction (default: the pack's default prompt)")] = None,
    golden: Annotated[bool, typer.Option("--golden", help="Use the pack's recorded golden observation")] = False,
    seed: Annotated[Optional[int], typer.Option(help="Noise seed for a reproducible chunk")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the chunk as JSON")] = False,
) -> None:
    """Predict one action chunk and print it (table or JSON)."""
    from ..packs.demo import resolve_pack
    from ..packs.golden import load_golden
    from ..policy import load_policy
    from ..types import Observation

    policy = load_policy(resolve_pack(pack), target=target, seed=seed)
    noise = None
    if golden:
        if policy.pack.manifest.golden is None:
            raise ConfigError("--golden", "this pack has no golden observation")
        obs, noise, _ = load_golden(policy.pack.path("golden"))
    else:
        images = _parse_images(image or [])
        if not images or state is None:
            raise ConfigError("infer", "give --image NAME=PATH (one per camera) and --state, or use --golden")
        text = prompt or policy.pack.manifest.default_prompt or ""
        obs = Observation(cameras=images, state=_parse_state(state), prompt=text)
    chunk = policy.infer(obs, noise=noise)
    if as_json:
        typer.echo(json.dumps({"info": policy.info.to_dict(), "chunk": chunk.to_dict()}, indent=1))
        return
    table = Table("t (s)", *[f"{n} [{u}]" for n, u in zip(chunk.names, chunk.units)])
    for i, row in enumerate(chunk.actions):
        table.add_row(f"{i * chunk.control_period_s:.2f}", *[f"{v:+.4f}" for v in row])
    console = Console()
    console.print(f"target {policy.target}: {policy.target_reason}")
    console.print(table)
    console.print("latency ms: " + ", ".join(f"{k}={v:.1f}" for k, v in chunk.latency_ms.items()
                                              if not k.startswith("expert_step_")))


def register(app: typer.Typer) -> None:
    app.command("infer")(infer)
