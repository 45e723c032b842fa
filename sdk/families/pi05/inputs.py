"""What a pi0.5 backend receives: already pre-processed, already validated, nothing padded.

Absent camera slots and prompt padding are *not* passed at all (openpi masks them out of every
attention and position count, which is the same as leaving them out), so no backend can waste
compute on them or get their positions wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pi05Inputs:
    images: np.ndarray  # [n_present, S, S, 3] float32 in [-1, 1], slot order
    image_slots: tuple[str, ...]  # model slot name of each present image (same order)
    tokens: np.ndarray  # [n_tokens] int32, BOS first, no padding
    noise: np.ndarray  # [action_horizon, action_dim] float32: x at t=1 (flow-matching start)
    num_steps: int  # Euler steps from t=1 to t=0

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.float32:
            raise ValueError(f"images must be [n, S, S, 3] float32, got {self.images.dtype} {self.images.shape}")
        if len(self.image_slots) != self.images.shape[0] or self.images.shape[0] == 0:
            raise ValueError("need at least one image and one slot name per image")
        if self.tokens.ndim != 1 or self.tokens.dtype != np.int32 or self.tokens.size == 0:
            raise ValueError(f"tokens must be non-empty 1-D int32, got {self.tokens.dtype} {self.tokens.shape}")
        if self.noise.ndim != 2 or self.noise.dtype != np.float32:
            raise ValueError(f"noise must be 2-D float32, got {self.noise.dtype} {self.noise.shape}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
