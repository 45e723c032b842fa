"""Golden input -> output pairs: a pack carries one recorded observation, the initial noise and
the action chunk the reference target produced, so any machine can prove it runs the pack right."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PackError
from ..types import Observation

GOLDEN_PROMPT = "pick up the red block and place it in the bowl"


def random_observation(pack, rng: np.random.Generator, prompt: str = GOLDEN_PROMPT) -> Observation:
    """A fresh, non-trivial observation for `pack`: textured images of odd sizes for every mapped
    camera and a state drawn inside the normalisation range."""
    cameras = {}
    for i, camera in enumerate(pack.manifest.cameras.values()):
        h, w = (180 + 20 * i, 320 - 16 * i)
        cameras[camera] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    stats = pack.norm_stats.state
    n = len(pack.manifest.state_space.names)
    state = rng.uniform(stats.q01[:n], stats.q99[:n]).astype(np.float32)
    return Observation(cameras=cameras, state=state, prompt=prompt, timestamp=0.0)


def record_golden(pack_dir: Path, out: Path, seed: int) -> None:
    from ..policy import load_policy

    policy = load_policy(pack_dir, target="reference", check="size")
    rng = np.random.default_rng(seed)
    obs = random_observation(policy.pack, rng)
    noise = rng.standard_normal(policy.noise_shape).astype(np.float32)
    chunk = policy.infer(obs, noise=noise)
    arrays = {f"camera.{k}": v for k, v in obs.cameras.items()}
    np.savez(out, state=obs.state, prompt=np.array(obs.prompt), noise=noise, actions=chunk.actions, **arrays)


def load_golden(path: Path) -> tuple[Observation, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            cameras = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith("camera.")}
            obs = Observation(cameras=cameras, state=data["state"], prompt=str(data["prompt"]), timestamp=0.0)
            return obs, data["noise"], data["actions"]
    except (OSError, KeyError, ValueError) as exc:
        raise PackError(str(path), f"golden file unreadable: {exc}") from exc
