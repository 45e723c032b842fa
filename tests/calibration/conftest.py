"""Calibration fixtures: observation folders written from structured random observations of the
tiny pack, and one calibration file made from them (a tiny-pack calibrate takes ~1 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_edge.calibration.calibrate import calibrate
from vla_edge.calibration.observations import write_observation
from vla_edge.packs.golden import random_observation
from vla_edge.packs.pack import Pack


def write_observations(pack_dir: Path, out: Path, n: int, seed: int) -> Path:
    """n observations of `pack_dir`: random textures with a per-sample brightness and a state
    anywhere in the normalisation range, so their statistics differ from sample to sample."""
    pack = Pack.open(pack_dir, check="size")
    rng = np.random.default_rng(seed)
    for i in range(n):
        obs = random_observation(pack, rng)
        scale = rng.uniform(0.2, 1.0)
        obs.cameras = {k: (v * scale).astype(np.uint8) for k, v in obs.cameras.items()}
        write_observation(out / f"s{i:02d}", obs)
    return out


@pytest.fixture(scope="session")
def obs_dir(tiny_pack_dir, tmp_path_factory) -> Path:
    return write_observations(tiny_pack_dir, tmp_path_factory.mktemp("obs") / "obs", 8, seed=11)


@pytest.fixture(scope="session")
def calib_file(tiny_pack_dir, obs_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calib") / "tiny.npz"
    calibrate(tiny_pack_dir, [obs_dir], out, held_out=0.25, seed=3)
    return out
