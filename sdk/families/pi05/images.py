"""Image pre-processing exactly as openpi does it for pi0.5.

openpi resizes with PIL bilinear keeping the aspect ratio, pads with black to the square model
size (centred, integer offsets), then maps uint8 [0, 255] to float [-1, 1].
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8, aspect preserved, black padding."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    ratio = max(width / size, height / size)
    new_w, new_h = max(1, int(width / ratio)), max(1, int(height / ratio))
    resized = Image.fromarray(image).resize((new_w, new_h), resample=Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), 0)
    canvas.paste(resized, (max(0, (size - new_w) // 2), max(0, (size - new_h) // 2)))
    return np.asarray(canvas)


def to_model_range(image: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] (SigLIP mean = std = 0.5)."""
    return image.astype(np.float32) / 255.0 * 2.0 - 1.0
