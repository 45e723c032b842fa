"""Image pre-processing as openpi does it for pi0.5, run by the C++ implementation
(native/src/policy/images.cpp) that the C ABI uses too.

openpi resizes with PIL bilinear keeping the aspect ratio, pads with black to the square model
size (centred, integer offsets), then maps uint8 [0, 255] to float [-1, 1]. The C++ resize is
Pillow's bilinear filter (same coefficients and fixed-point rounding, horizontal pass first):
identical to PIL for landscape and square images; for portrait images Pillow 13 sometimes runs
the vertical pass first, which moves a few pixels by one level (tests/policy_io states the bound).
"""

from __future__ import annotations

import numpy as np

from ...native_io import policy_io


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8, aspect preserved, black padding."""
    if image.shape[:2] == (size, size):
        return image
    return policy_io().resize_with_pad(np.ascontiguousarray(image), size)


def to_model_range(image: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] (SigLIP mean = std = 0.5)."""
    return policy_io().to_model_range(np.ascontiguousarray(image))
