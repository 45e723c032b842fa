"""openpi `norm_stats.json`: per-dimension statistics used to (un)normalise state and actions.

pi0.5 uses quantile normalisation: x -> (x - q01) / (q99 - q01 + 1e-6) * 2 - 1, so the 1st..99th
percentile of the training data maps onto [-1, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PackError
from ..native_io import policy_io


@dataclass(frozen=True)
class Stats:
    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray
    q99: np.ndarray

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """[..., n] -> float32, computed by the C++ implementation the C ABI runs (float64 inside)."""
        return policy_io().normalize(self.q01, self.q99, np.asarray(x, dtype=np.float64))

    def unnormalize(self, y: np.ndarray) -> np.ndarray:
        return policy_io().unnormalize(self.q01, self.q99, np.asarray(y, dtype=np.float64))

    def to_json(self) -> dict:
        return {k: getattr(self, k).astype(float).tolist() for k in ("mean", "std", "q01", "q99")}


@dataclass(frozen=True)
class NormStats:
    state: Stats
    actions: Stats

    def to_json(self) -> dict:
        return {"norm_stats": {"state": self.state.to_json(), "actions": self.actions.to_json()}}


def _stats(path: Path, key: str, raw: object, min_dim: int) -> Stats:
    where = f"{path}: norm_stats.{key}"
    if not isinstance(raw, dict):
        raise PackError(where, "expected an object with mean/std/q01/q99 lists")
    arrays = {}
    for field in ("mean", "std", "q01", "q99"):
        value = raw.get(field)
        if not isinstance(value, list) or not value:
            raise PackError(f"{where}.{field}", "expected a non-empty list of numbers (openpi format)")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise PackError(f"{where}.{field}", f"expected numbers: {exc}") from exc
        if arr.ndim != 1 or not np.all(np.isfinite(arr)):
            raise PackError(f"{where}.{field}", "expected a flat list of finite numbers")
        if arr.size < min_dim:
            raise PackError(f"{where}.{field}", f"expected at least {min_dim} entries, got {arr.size}")
        arrays[field] = arr
    if len({a.size for a in arrays.values()}) != 1:
        raise PackError(where, "mean/std/q01/q99 must have the same length")
    bad = np.flatnonzero(arrays["q99"] < arrays["q01"])
    if bad.size:
        raise PackError(f"{where}.q99", f"q99 < q01 at index {bad[0]}")
    return Stats(**arrays)


def load_norm_stats(path: Path, state_dim: int, action_dim: int) -> NormStats:
    """Read and validate; stats may be wider than the robot (padded dims) but never narrower."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(str(path), f"cannot read norm stats JSON: {exc}") from exc
    root = data.get("norm_stats", data) if isinstance(data, dict) else None
    if not isinstance(root, dict):
        raise PackError(str(path), "expected {'norm_stats': {'state': ..., 'actions': ...}}")
    for key in ("state", "actions"):
        if key not in root:
            raise PackError(str(path), f"missing 'norm_stats.{key}'")
    return NormStats(
        state=_stats(path, "state", root["state"], state_dim),
        actions=_stats(path, "actions", root["actions"], action_dim),
    )
