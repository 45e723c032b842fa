"""Which pack a calibration file belongs to, and the refusal of one that does not fit.

Statistics are only meaningful for the weights they were collected on: the file records the
pack's identity (weights sha256 above all) and consumers refuse a file whose identity, flow step
count, tensor set or channel counts differ from the pack they are asked to use it on, naming
exactly what differs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vla_edge.errors import ConfigError
from vla_edge.packs.hashing import sha256_file

from .calibfile import Calibration


TABLES = ("embed.weight", "v.position_embd.weight")


def pack_identity(pack: Any) -> dict[str, Any]:
    """What a calibration file says about the pack it was collected on."""
    m = pack.manifest
    return {
        "name": m.name, "family": m.family, "variant": getattr(pack.config, "variant", None),
        "recipe": m.quantization.recipe,
        "manifest_sha256": sha256_file(pack.dir / "pack.yaml"),
        "weights_sha256": m.files.weights.sha256,
        "num_flow_steps": int(pack.config.num_flow_steps),
    }


def input_widths(pack: Any) -> dict[str, int]:
    """Weight tensor -> input channels of its matmul (a conv kernel: channels x kernel area).
    The token and position embeddings are tables (looked up / added), not matmul weights: they
    have no input activations."""
    return {name: math.prod(spec.shape[1:]) for name, spec in pack.family.tensor_specs(pack.config).items()
            if spec.is_matrix and name not in TABLES}


def expert_tensor(name: str) -> bool:
    """Tensors evaluated inside the flow loop carry one table per flow step."""
    return name.startswith("action.")


def unused_tensors(calib: Calibration) -> dict[str, str]:
    """Tensors the calibration run never saw because their output does not reach the actions
    (the x86 graph skips the last LLM layer's attention output and MLP), with the reason; a
    consumer quantises them without statistics (nothing they compute is ever used)."""
    return dict(calib.header.get("unused", {}))


def check_matches(calib: Calibration, pack: Any, needed: list[str], where: str = "--calib",
                  allow_unused: bool = True) -> None:
    """Refuse `calib` for `pack` unless it was collected on the same weights with the same flow
    step count and holds every tensor in `needed` with the pack's channel count (tensors the
    file lists as unused excepted, when `allow_unused`)."""
    mine, theirs = pack_identity(pack), calib.pack
    if theirs.get("weights_sha256") != mine["weights_sha256"]:
        raise ConfigError(where, f"collected on pack '{theirs.get('name')}' (weights sha256 "
                                 f"{str(theirs.get('weights_sha256'))[:12]}…), not on '{mine['name']}' (weights sha256 "
                                 f"{mine['weights_sha256'][:12]}…); run `vla-edge calibrate --pack {pack.dir}`")
    if theirs.get("num_flow_steps") != mine["num_flow_steps"]:
        raise ConfigError(where, f"collected with {theirs.get('num_flow_steps')} flow steps, pack '{mine['name']}' "
                                 f"runs {mine['num_flow_steps']}")
    widths = input_widths(pack)
    unused = unused_tensors(calib) if allow_unused else {}
    missing = [n for n in needed if n not in calib.tensors and n not in unused]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(where, f"no statistics for tensor(s) {', '.join(missing[:3])}{more}")
    for name in (n for n in needed if n in calib.tensors):
        stats = calib.tensors[name]
        if stats.n_in != widths[name]:
            raise ConfigError(f"{where}:{name}", f"{stats.n_in} input channels, pack '{mine['name']}' has "
                                                 f"{widths[name]}")
        steps = mine["num_flow_steps"] if expert_tensor(name) else 1
        if stats.steps != steps:
            raise ConfigError(f"{where}:{name}", f"{stats.steps} flow-step tables, expected {steps}")
        if int(stats.count.sum()) == 0:
            raise ConfigError(f"{where}:{name}", "no activation rows recorded")


def is_calibration_file(path: Path) -> bool:
    return Path(path).is_file() and Path(path).suffix == ".npz"
