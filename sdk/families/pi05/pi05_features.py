"""Prefix features of a pi0.5 pack, computed with the reference forward's own stages.

Used by the demo-policy builder: an action expert that attends uniformly to the prefix (zero
queries) and has zero values for its own tokens receives, per layer, the prefix values summed
over prefix tokens and divided by (prefix + horizon) tokens. This computes exactly that, through
the pack's preprocessing and the reference model's vision and prefix stages (not a copy of them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def prefix_value_pool(pack_dir: Path, images: list[dict[str, np.ndarray]], states: np.ndarray,
                      prompt: str) -> np.ndarray:
    """[n, layers * kv_heads * head_dim] pooled prefix values for n observations (camera name ->
    image dicts, as a robot's cameras deliver them)."""
    from ...packs.pack import Pack
    from ...targets.reference.pi05_model import Pi05Reference
    from ...types import Observation

    pack = Pack.open(pack_dir, check="size")
    cfg = pack.config
    pre = pack.family.preprocessor(pack)
    model = Pi05Reference(cfg, pack.weights.float32)
    noise = np.zeros(pre.noise_shape(), np.float32)  # unused by the prefix; required by the preprocessor
    rows = []
    for image, state in zip(images, states):
        inputs = pre(Observation(cameras=dict(image), state=np.asarray(state, np.float32), prompt=prompt), noise)
        tokens = [model.vision(img) for img in inputs.images]
        prefix = np.concatenate(tokens + [model.embed_text(inputs.tokens)]).astype(np.float32)
        cache = model.prefix_cache(prefix)
        total = cache.length + cfg.action_horizon
        rows.append(np.concatenate([v.sum(axis=0).reshape(-1) / total for v in cache.values]))
    return np.stack(rows).astype(np.float64)
