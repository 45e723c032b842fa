"""Pieces every importer shares: shape checks against the family inventory, norm statistics in
any of the forms people ship them, the robot layout, the tokenizer check, and safe loading of
safetensors / torch files (never unpickling code).

Importers differ in how they read weights; what a finished pack must satisfy is the same, so it
is checked here once and every format fails with the same kind of message (file, tensor, what
was expected)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PackError

STAT_FIELDS = ("mean", "std", "q01", "q99")
# pi0.5 feature name -> prefix in flat stat keys (`action_q01`) and LeRobot feature names
_STAT_KEYS = (("state", "state", "observation.state"), ("actions", "action", "action"))


def check_tensor_shapes(where: str, shapes: Mapping[str, tuple[int, ...]], specs: Mapping[str, Any]) -> None:
    """Every tensor of the family's inventory present with one of its allowed shapes."""
    for name, spec in specs.items():
        shape = shapes.get(name)
        if shape is None:
            raise PackError(f"{where}: tensor '{name}'", "missing (not a complete pi0.5 export)")
        if tuple(shape) not in spec.allowed_shapes():
            raise PackError(f"{where}: tensor '{name}'", f"shape {list(shape)}, expected "
                            f"{' or '.join(str(list(s)) for s in spec.allowed_shapes())}")


def _flat_stats(data: Mapping[str, Any], prefix: str) -> dict[str, Any] | None:
    found = {f: data[f"{prefix}_{f}"] for f in STAT_FIELDS if f"{prefix}_{f}" in data}
    return found or None


def openpi_stats(data: Mapping[str, Any], where: str,
                 fallback: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """openpi-form statistics from openpi's nested JSON or the flat `action_q01`… form; per field
    the data wins and `fallback` ({"state": {...}, "actions": {...}}) fills what it lacks.
    pi0.5 normalises with quantiles, so q01/q99 are required for state and actions alike."""
    nested = data.get("norm_stats") if isinstance(data.get("norm_stats"), dict) else None
    out = {}
    for key, prefix, _ in _STAT_KEYS:
        stats = {**((fallback or {}).get(key) or {}), **((nested or {}).get(key) or _flat_stats(data, prefix) or {})}
        if not stats:
            raise PackError(where, f"no {key} statistics found")
        absent = [f for f in ("q01", "q99") if f not in stats]
        if absent:
            raise PackError(where, f"{key} statistics lack {'/'.join(absent)}: pi0.5 normalises with quantiles "
                                   "(re-export from an openpi checkpoint, whose norm_stats.json has q01/q99, or a "
                                   "LeRobot pi05 checkpoint trained with QUANTILES normalisation)")
        q01, q99 = np.asarray(stats["q01"], np.float64).ravel(), np.asarray(stats["q99"], np.float64).ravel()
        full = {"mean": stats.get("mean", (q01 + q99) / 2), "std": stats.get("std", np.ones_like(q01)),
                "q01": q01, "q99": q99}
        out[key] = {f: [float(v) for v in np.asarray(full[f], np.float64).ravel()] for f in STAT_FIELDS}
    return {"norm_stats": out}


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(str(path), f"cannot read JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PackError(str(path), "expected a JSON object")
    return data


def lerobot_stats(path: Path) -> dict[str, Any]:
    """LeRobot keeps statistics in `policy_preprocessor_step_*_normalizer_processor.safetensors`
    as `observation.state.q01`, `action.q99`, …; returned in the flat form."""
    tensors = dict(read_safetensors(path))
    flat = {}
    for _, prefix, feature in _STAT_KEYS:
        for f in STAT_FIELDS:
            if f"{feature}.{f}" in tensors:
                flat[f"{prefix}_{f}"] = tensors[f"{feature}.{f}"].tolist()
    return flat


def robot_spaces_for_stats(stats: dict[str, Any], robot: str, where: str) -> dict[str, Any]:
    """The pack's state/action names, units and cameras for `robot`; the statistics must cover
    the robot's dimensions (the source files do not say which robot they drive)."""
    from ..families.pi05.synth import robot_spaces

    spaces = robot_spaces(robot)
    spaces.pop("norm_stats")
    for key, space in (("state", "state_space"), ("actions", "action_space")):
        have, need = len(stats["norm_stats"][key]["q01"]), len(spaces[space]["names"])
        if have < need:
            raise PackError(f"{where}: norm_stats.{key}", f"{have} dimensions, robot '{robot}' needs {need}")
    return spaces


def check_tokenizer(path: Path) -> None:
    if not path.is_file():
        raise PackError(str(path), "missing: the pack needs PaliGemma's SentencePiece tokenizer.model "
                                   "(from google/paligemma-3b-pt-224; pass --tokenizer PATH)")
    try:
        import sentencepiece as spm

        spm.SentencePieceProcessor(model_file=str(path))
    except Exception as exc:  # noqa: BLE001 - sentencepiece raises plain RuntimeError/OSError
        raise PackError(str(path), f"not a SentencePiece model: {exc}") from exc


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise PackError("torch", "this importer reads PyTorch/safetensors files and needs torch "
                                 "(pip install 'vla-edge[import]')") from exc
    return torch


def to_numpy(tensor: Any) -> np.ndarray:
    """torch tensor (any float dtype incl. bf16, or integer) -> numpy; floats become float32."""
    torch = _torch()
    if tensor.is_floating_point():
        return tensor.detach().to(torch.float32).cpu().numpy()
    return tensor.detach().cpu().numpy()


def read_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) pairs, one tensor in memory at a time."""
    for name, tensor in iter_safetensors(path):
        yield name, to_numpy(tensor)


def iter_safetensors(path: Path) -> Iterator[tuple[str, Any]]:
    _torch()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
    except Exception as exc:  # noqa: BLE001 - SafetensorError / OSError on damage
        raise PackError(str(path), f"not a readable safetensors file: {exc}") from exc


def safetensors_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str], dict[str, str]]:
    """(shapes, dtypes, file metadata) without loading any tensor data."""
    _torch()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {n: tuple(f.get_slice(n).get_shape()) for n in f.keys()}
            dtypes = {n: str(f.get_slice(n).get_dtype()) for n in f.keys()}
            return shapes, dtypes, dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - SafetensorError / OSError on damage
        raise PackError(str(path), f"not a readable safetensors file: {exc}") from exc


def load_torch_weights_only(path: Path) -> Any:
    """torch.load with weights_only=True: tensors, dicts, lists and numbers only. A pickle that
    needs to run code (custom classes, functions) is refused, never executed."""
    torch = _torch()
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise PackError(str(path), "missing") from exc
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError on damage
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "UnpicklingError" in type(exc).__name__:
            raise PackError(str(path), "refused: the pickle needs to run code to load (weights_only=True "
                                       f"rejected it: {text}); re-save it as plain tensors/dicts "
                                       "(e.g. torch.save({k: v for k, v in state.items()}))") from exc
        raise PackError(str(path), f"not a readable torch file: {text}") from exc
