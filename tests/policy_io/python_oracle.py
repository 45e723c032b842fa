"""The Python pre/post-processing the C++ implementation replaced, kept ONLY as a test oracle
(PIL's bilinear resize, NumPy quantile maps, the sentencepiece Python wheel). Nothing in the SDK
imports it."""

from __future__ import annotations

import numpy as np
import sentencepiece as spm
from PIL import Image

EPS = 1e-6


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
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
    return image.astype(np.float32) / 255.0 * 2.0 - 1.0


def normalize(q01: np.ndarray, q99: np.ndarray, x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    return ((x - q01[:n]) / (q99[:n] - q01[:n] + EPS) * 2.0 - 1.0).astype(np.float32)


def unnormalize(q01: np.ndarray, q99: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = y.shape[-1]
    return ((y + 1.0) / 2.0 * (q99[:n] - q01[:n] + EPS) + q01[:n]).astype(np.float32)


def discretize_state(normalized: np.ndarray) -> np.ndarray:
    clipped = np.clip(normalized, -1.0, 1.0)
    return np.digitize(clipped, bins=np.linspace(-1.0, 1.0, 257)[:-1]) - 1


def clean_prompt(prompt: str) -> str:
    return prompt.strip().replace("_", " ").replace("\n", " ")


def tokens(model_path: str, prompt: str, normalized_state: np.ndarray | None) -> np.ndarray:
    sp = spm.SentencePieceProcessor(model_file=model_path)
    cleaned = clean_prompt(prompt)
    if normalized_state is not None:
        state_str = " ".join(str(int(b)) for b in discretize_state(normalized_state))
        ids = sp.encode(f"Task: {cleaned}, State: {state_str};\nAction: ", add_bos=True)
    else:
        ids = sp.encode(cleaned, add_bos=True) + sp.encode("\n")
    return np.asarray(ids, dtype=np.int32)


def postprocess(q01, q99, delta_mask, n, model_actions, state) -> np.ndarray:
    actions = unnormalize(q01, q99, model_actions[:, :n].astype(np.float64))
    if delta_mask is not None and any(delta_mask):
        mask = np.asarray(delta_mask)
        actions[:, mask] += state[:n][mask].astype(np.float32)
    return actions.astype(np.float32)
