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
        if name == "auto":
            raise TargetUnavailableError("'auto' is resolved by load_policy (choose_auto), not a target module")
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


# `--target auto`: tried in this order, the first that is registered, available here and able to run
# the pack wins. GPU targets first (registered or not yet: absent names are skipped), then the
# native CPU core, then the NumPy oracle. Registered targets missing from this list come after x86.
# `onnx` is never chosen: it needs an export directory (`pack export-onnx`) and is fp32 on CPU.
AUTO_PREFERENCE: tuple[str, ...] = ("gb10", "orin", "cuda", "x86")
AUTO_LAST: tuple[str, ...] = ("reference",)
AUTO_NEVER: frozenset[str] = frozenset({"onnx"})


def choose_auto(pack_targets: list[str]) -> tuple[str, str]:
    """The target `auto` means for a pack listing `pack_targets`: (name, why it was chosen, naming
    each faster candidate and why it was passed over). TargetUnavailableError if none can run it."""
    rest = [n for n in TARGETS if n not in AUTO_PREFERENCE and n not in AUTO_LAST and n not in AUTO_NEVER]
    order = [n for n in (*AUTO_PREFERENCE, *rest, *AUTO_LAST) if n in TARGETS]
    passed: list[str] = []
    for name in order:
        if not pack_supports(name, pack_targets):
            passed.append(f"{name}: the pack does not list it")
            continue
        try:
            ok, why = _module(name).availability()
        except Exception as exc:  # a broken target must not stop auto from trying the next
            ok, why = False, f"failed to load: {exc}"
        if ok:
            reason = f"fastest target that can run this pack here ({why})"
            return name, reason + (f"; passed over {'; '.join(passed)}" if passed else "")
        passed.append(f"{name}: {why}")
    raise TargetUnavailableError(f"--target auto: no target can run a pack listing {pack_targets}: {'; '.join(passed)}")


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
