"""`vla-edge pack import --from FORMAT SRC --out DIR` and `vla-edge pack compare A B --obs N | --obs-from PATH`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from .pack_cmd import console, pack_app

if TYPE_CHECKING:
    from ..policy import Policy


def import_pack(
    src: Annotated[Path, typer.Argument(help="Source artifact (directory or file)")],
    out: Annotated[Path, typer.Option("--out", help="Directory to create")],
    fmt: Annotated[str, typer.Option("--from", help="actquant | checkpoint | torchao-int8wo | omega-qvla")],
    robot: Annotated[str, typer.Option(help="Robot whose joints/cameras the pack's spaces follow, or libero (LIBERO's end-effector spaces)")] = "ur3",
    golden: Annotated[Optional[bool], typer.Option("--golden/--no-golden",
                                                    help="Record a golden output (default: weights <= 1 GB)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
    tokenizer: Annotated[Optional[Path], typer.Option(
        help="PaliGemma tokenizer.model (checkpoint, torchao-int8wo: default SRC/tokenizer.model)")] = None,
    norm_stats: Annotated[Optional[Path], typer.Option(
        help="Statistics file (checkpoint, torchao-int8wo: default found in SRC)")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="checkpoint: auto (F32 from fp32, else F16) | f32 | f16")] = None,
    base: Annotated[Optional[Path], typer.Option(
        help="omega-qvla: the fp16 pi0.5 base checkpoint quantized.pt applies to (tokenizer/stats from it)")] = None,
    allow_sensitive_a4: Annotated[Optional[bool], typer.Option(
        "--allow-sensitive-a4", help="omega-qvla: accept W4A4 on state/action in/out and time-MLP layers")] = None,
    group_size: Annotated[Optional[int], typer.Option(
        help="omega-qvla: input columns per weight scale (the builder's --gptq-block-size, default 128)")] = None,
) -> None:
    """Turn an artifact built elsewhere into a verified pack (nothing is written if it is rejected)."""
    from ..importers import run_importer

    path = run_importer(fmt, src, out, robot=robot, overwrite=overwrite, golden=golden, tokenizer=tokenizer,
                        norm_stats=norm_stats, dtype=dtype, base=base, allow_sensitive_a4=allow_sensitive_a4,
                        group_size=group_size)
    console.print(f"wrote pack [bold]{path}[/bold] (check it with `vla-edge pack verify {path}`)")


def _load_compared(label: str, arg: str, target: str) -> Policy:
    """Load one side of `pack compare`; a bad pack is reported as argument A or B."""
    from ..errors import PackError
    from ..packs.demo import resolve_pack
    from ..policy import load_policy

    try:
        return load_policy(resolve_pack(arg), target=target)
    except PackError as exc:
        raise PackError(f"pack {label} ({exc.where})", exc.problem) from exc


def compare(
    a: Annotated[str, typer.Argument(help="First pack")],
    b: Annotated[str, typer.Argument(help="Second pack (the baseline, e.g. the fp32 parent)")],
    obs: Annotated[int, typer.Option("--obs", help="Random observations to compare on")] = 8,
    target_a: Annotated[str, typer.Option(help="Target for A")] = "reference",
    target_b: Annotated[str, typer.Option(help="Target for B")] = "reference",
    seed: Annotated[Optional[int], typer.Option(help="Seed for observations and noise (default: a fresh one, "
                                                     "printed and stored in the report)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report here")] = None,
    obs_from: Annotated[Optional[Path], typer.Option("--obs-from", help="Compare on recorded observations instead: "
                                                     "a calibration file (its held-out ones), a run directory "
                                                     "or an observation folder")] = None,
) -> None:
    """Action-chunk rel-L2, first-action error and max-abs error per action dim on shared inputs."""
    from ..errors import ConfigError
    from ..packs.compare import compare_on, compare_policies, recorded_inputs, require_observations

    require_observations(obs)
    if json_out is not None and not json_out.parent.is_dir():
        raise ConfigError("--json", f"directory {json_out.parent} does not exist")
    if obs_from is not None and not obs_from.exists():
        raise ConfigError("--obs-from", f"{obs_from} does not exist")
    policy_a, policy_b = _load_compared("A", a, target_a), _load_compared("B", b, target_b)
    if obs_from is None:
        report = compare_policies(policy_a, policy_b, obs, seed)
        source = f"seed {report['seed']}"
    else:
        inputs, ids = recorded_inputs(policy_a, obs_from)
        report = {**compare_on(policy_a, policy_b, inputs), "obs_from": str(obs_from), "observation_ids": ids}
        source = f"from {obs_from}"
    table = Table(title=f"{report['a']['pack']} ({target_a}) vs {report['b']['pack']} ({target_b}), "
                        f"{report['observations']} observations, {source}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("chunk rel-L2 mean / max", f"{report['rel_l2']['mean']:.3e} / {report['rel_l2']['max']:.3e}")
    table.add_row("first action L2 mean / max",
                  f"{report['first_action_l2']['mean']:.3e} / {report['first_action_l2']['max']:.3e}")
    for name, value in report["max_abs_per_dim"].items():
        table.add_row(f"max |Δ| {name} ({report['units'][name]})", f"{value:.3e}")
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(report, indent=1))


def register(app: typer.Typer) -> None:
    pack_app.command("import")(import_pack)
    pack_app.command("compare")(compare)
