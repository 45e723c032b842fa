"""How far apart two packs (or two targets) act on the same observations and noise.

Used to show where a quantised or imported pack sits relative to its fp32 parent: both policies
see identical random observations and identical initial noise, so every difference is the
weights' or the target's. The inputs come from one seed, recorded in the report, so any
comparison can be re-run (or re-checked) on exactly the same inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..policy import Policy
from ..types import Observation
from .golden import random_observation
from .writer import rel_l2

Inputs = Sequence[tuple[Observation, np.ndarray]]


def require_observations(n_obs: int) -> None:
    """Refuse a comparison over no observations before anything is loaded."""
    if n_obs < 1:
        raise ConfigError("--obs", f"expected at least 1 observation, got {n_obs}")


def require_comparable(a: Policy, b: Policy) -> None:
    """Two policies can be compared only if they emit the same actions from the same noise."""
    if a.info.action_names != b.info.action_names or a.noise_shape != b.noise_shape:
        raise ConfigError("packs", f"not comparable: actions {a.info.action_names} / noise {a.noise_shape} vs "
                                   f"{b.info.action_names} / {b.noise_shape}")


def comparison_inputs(policy: Policy, n_obs: int, seed: int) -> list[tuple[Observation, np.ndarray]]:
    """The n_obs (observation, initial noise) pairs `compare_policies` uses for `seed`."""
    require_observations(n_obs)
    rng = np.random.default_rng(seed)
    inputs = []
    for _ in range(n_obs):
        obs = random_observation(policy.pack, rng)
        inputs.append((obs, rng.standard_normal(policy.noise_shape).astype(np.float32)))
    return inputs


def compare_on(a: Policy, b: Policy, inputs: Inputs) -> dict[str, Any]:
    """Chunk rel-L2 ||a-b||/||b|| (mean, max over inputs), first-action L2 ||a[0]-b[0]|| (mean,
    max) and max |a-b| per action dim over every input and step, in the robot's units."""
    require_comparable(a, b)
    require_observations(len(inputs))
    chunks_a = [a.infer(obs, noise=noise).actions for obs, noise in inputs]
    chunks_b = [b.infer(obs, noise=noise).actions for obs, noise in inputs]
    return {
        "a": {"pack": a.info.pack_name, "target": a.target, "recipe": a.info.quant_recipe},
        "b": {"pack": b.info.pack_name, "target": b.target, "recipe": b.info.quant_recipe},
        **chunk_errors(chunks_a, chunks_b, a.info.action_names, a.info.action_units),
    }


def chunk_errors(chunks_a: Sequence[np.ndarray], chunks_b: Sequence[np.ndarray], names: Sequence[str],
                 units: Sequence[str]) -> dict[str, Any]:
    """The error measures of `compare_on` for chunks already computed (b is the baseline)."""
    rel = [rel_l2(x, y) for x, y in zip(chunks_a, chunks_b)]
    first = [float(np.linalg.norm(x[0] - y[0])) for x, y in zip(chunks_a, chunks_b)]
    max_abs = np.max([np.max(np.abs(x - y), axis=0) for x, y in zip(chunks_a, chunks_b)], axis=0)
    return {
        "observations": len(rel),
        "rel_l2": {"mean": float(np.mean(rel)), "max": float(np.max(rel))},
        "first_action_l2": {"mean": float(np.mean(first)), "max": float(np.max(first))},
        "max_abs_per_dim": dict(zip(names, map(float, max_abs))),
        "units": dict(zip(names, units)),
    }


def recorded_inputs(policy: Policy, obs_from: str | Path) -> tuple[list[tuple[Observation, np.ndarray]], list[str]]:
    """(observation, noise) pairs read from disk: a calibration file's held-out observations or a
    run directory / observation folder, each with the noise `calibrate` ran it with; and their ids."""
    from vla_edge.calibration.calibrate import evaluation_samples, sample_noise
    from vla_edge.calibration.observations import CameraSpec

    samples, seed = evaluation_samples(Path(obs_from), CameraSpec.of(policy.pack.manifest))
    inputs = [(s.load(), sample_noise(s.id, seed, policy.noise_shape)) for s in samples]
    return inputs, [s.id for s in samples]


def compare_policies(a: Policy, b: Policy, n_obs: int, seed: int | None = None) -> dict[str, Any]:
    """compare_on over n_obs random inputs drawn from `seed` (a fresh one when None; the report
    says which, so the run can be repeated). comparison_inputs checks n_obs, compare_on the pair."""
    if seed is None:
        seed = int(np.random.default_rng().integers(2**63 - 1))
    return {**compare_on(a, b, comparison_inputs(a, n_obs, seed)), "seed": seed}
