"""Target registry: names -> modules, imported only when asked for.

Each target module defines `availability() -> tuple[bool, str]` (can it run here, and if not why)
and `create_backend(pack, **options) -> Backend`. Adding a target = one module + one line here.
A module may also set `RUNS_PACKS_OF = "<target>"`: it executes that target's arithmetic from the
same weights (e.g. `onnx` exports the reference's graph), so any pack listing that target runs on it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from vla_edge.errors import TargetUnavailableError

TARGETS: dict[str, str] = {
    "reference": "vla_edge.targets.reference.target",
    "x86": "vla_edge.targets.x86.target",
    "onnx": "vla_edge.targets.onnx.target",
    "cuda": "vla_edge.targets.gpu.cuda",
    "gb10": "vla_edge.targets.gpu.gb10",
    "orin": "vla_edge.targets.gpu.orin",
}


def _module(name: str) -> ModuleType:
    if name not in TARGETS:
        raise TargetUnavailableError(f"unknown target '{name}'. {_summary()}")
    return importlib.import_module(TARGETS[name])


def require_known(name: str) -> None:
    """Raise TargetUnavailableError listing every target if `name` is not registered."""
    _module(name)


def pack_supports(name: str, pack_targets: list[str]) -> bool:
    """Does a pack whose manifest lists `pack_targets` run on target `name`?"""
    return name in pack_targets or getattr(_module(name), "RUNS_PACKS_OF", None) in pack_targets


def target_status() -> dict[str, tuple[bool, str]]:
    """name -> (available, reason) for every registered target; never raises."""
    status: dict[str, tuple[bool, str]] = {}
    for name in TARGETS:
        try:
            status[name] = _module(name).availability()
        except Exception as exc:  # a broken target must not hide the others
            status[name] = (False, f"failed to load: {exc}")
    return status


def _summary() -> str:
    parts = [f"{n} ({'available' if ok else 'unavailable: ' + why})" for n, (ok, why) in target_status().items()]
    return "Targets: " + "; ".join(parts)


def create_backend(name: str, pack: Any, **options: Any):
    """Instantiate target `name` for `pack`, or raise TargetUnavailableError listing what can run."""
    module = _module(name)
    ok, why = module.availability()
    if not ok:
        raise TargetUnavailableError(f"target '{name}' is unavailable: {why}. {_summary()}")
    return module.create_backend(pack, **options)
