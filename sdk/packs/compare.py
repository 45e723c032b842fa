"""How far apart two packs (or two targets) act on the same observations and noise.

Used to show where a quantised or imported pack sits relative to its fp32 parent: both policies
see identical random observations and identical initial noise, so every difference is the
weights' or the target's."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..policy import Policy
from .golden import random_observation
from .writer import rel_l2


def compare_policies(a: Policy, b: Policy, n_obs: int, seed: int | None = None) -> dict[str, Any]:
    if n_obs < 1:
        raise ConfigError("--obs", f"expected at least 1 observation, got {n_obs}")
    if a.info.action_names != b.info.action_names or a.noise_shape != b.noise_shape:
        raise ConfigError("packs", f"not comparable: actions {a.info.action_names} / noise {a.noise_shape} vs "
                                   f"{b.info.action_names} / {b.noise_shape}")
    rng = np.random.default_rng(seed)
    rel, first, max_abs = [], [], np.zeros(len(a.info.action_names))
    for _ in range(n_obs):
        obs = random_observation(a.pack, rng)
        noise = rng.standard_normal(a.noise_shape).astype(np.float32)
        x, y = a.infer(obs, noise=noise).actions, b.infer(obs, noise=noise).actions
        rel.append(rel_l2(x, y))
        first.append(float(np.linalg.norm(x[0] - y[0])))
        max_abs = np.maximum(max_abs, np.max(np.abs(x - y), axis=0))
    return {
        "a": {"pack": a.info.pack_name, "target": a.target, "recipe": a.info.quant_recipe},
        "b": {"pack": b.info.pack_name, "target": b.target, "recipe": b.info.quant_recipe},
        "observations": n_obs,
        "rel_l2": {"mean": float(np.mean(rel)), "max": float(np.max(rel))},
        "first_action_l2": {"mean": float(np.mean(first)), "max": float(np.max(first))},
        "max_abs_per_dim": dict(zip(a.info.action_names, map(float, max_abs))),
        "units": dict(zip(a.info.action_names, a.info.action_units)),
    }
