"""Float32 NumPy building blocks of the pi0.5 graph, written for reading, not for speed."""

from __future__ import annotations

import numpy as np

_SQRT_2_OVER_PI = np.float32(np.sqrt(2.0 / np.pi))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x @ W.T + b. A weight stored with a zero-padded input dim (K-quant alignment) gets the
    activation zero-padded to match, which leaves the product unchanged."""
    n_in = weight.shape[1]
    if x.shape[-1] < n_in:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (n_in - x.shape[-1],), np.float32)], axis=-1)
    y = x @ weight.T
    return y + bias if bias is not None else y


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(eps)) * weight + bias


def rms_normalize(x: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(eps))


def gemma_rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Gemma stores norm weights as deltas from one: y = rms(x) * (1 + w)."""
    return rms_normalize(x, eps) * (np.float32(1.0) + weight)


def ada_rms_norm(x: np.ndarray, cond: np.ndarray, dense_w: np.ndarray, dense_b: np.ndarray, eps: float):
    """pi0.5 adaptive RMSNorm: the time condition predicts [scale | shift | gate]."""
    return ada_rms_modulate(x, linear(cond, dense_w, dense_b), eps)


def ada_rms_modulate(x: np.ndarray, modulation: np.ndarray, eps: float):
    """AdaRMSNorm given the modulation Dense's output [scale | shift | gate] (however computed)."""
    scale, shift, gate = np.split(modulation, 3, axis=-1)
    return rms_normalize(x, eps) * (np.float32(1.0) + scale) + shift, gate


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(_SQRT_2_OVER_PI * (x + np.float32(0.044715) * x**3)))


def silu(x: np.ndarray) -> np.ndarray:
    return x / (np.float32(1.0) + np.exp(-x))


def rope_cos_sin(positions: np.ndarray, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [tokens, head_dim] of the rotary angles, built in float64 then rounded to float32
    (also the tables the ONNX export stores, so both targets rotate by the same numbers)."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    full = np.concatenate([angles, angles], axis=-1)
    return np.cos(full).astype(np.float32), np.sin(full).astype(np.float32)


def rope(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """Rotary embedding, rotate-half (NEOX) convention over the whole head dim.
    x: [tokens, heads, head_dim]; positions: [tokens]."""
    head_dim = x.shape[-1]
    cos, sin = (table[:, None, :] for table in rope_cos_sin(positions, head_dim, theta))
    half = head_dim // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unmasked softmax attention with KV heads shared by groups of query heads (MQA/GQA).
    q: [nq, heads, d]; k, v: [nk, kv_heads, d] -> [nq, heads * d]."""
    heads, kv_heads, d = q.shape[1], k.shape[1], q.shape[2]
    group = heads // kv_heads
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    scores = np.einsum("qhd,khd->hqk", q, k) / np.float32(np.sqrt(d))
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    out = np.einsum("hqk,khd->qhd", probs, v)
    return out.reshape(q.shape[0], heads * d)


def sinusoidal_time(t: float, dim: int, min_period: float, max_period: float) -> np.ndarray:
    """openpi's time embedding: [sin | cos] of t * 2π / period, periods log-spaced."""
    fraction = np.linspace(0.0, 1.0, dim // 2)
    period = min_period * (max_period / min_period) ** fraction
    angle = t * 2.0 * np.pi / period
    return np.concatenate([np.sin(angle), np.cos(angle)]).astype(np.float32)
