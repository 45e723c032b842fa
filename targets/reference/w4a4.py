"""W4A4 linear layers executed exactly as the pack defines them: the oracle for future kernels.

y = dequant( int( quant4(rotate(x)) ) · int(W4) ) rotated back, step by step:

1. rotate: x' = (x[..., perm] split into blocks of B) @ R_b, computed in float64, rounded to float32
2. scales: per_step -> row `step` of the layer's static table (step 0 = first Euler step, t = 1);
   per_token -> max|x'| / 7 over each token's group of A channels (0 for an all-zero group)
3. quantise: q = clamp(rint(x' / s), -8, 7), float32 division, round half to even
4. integer accumulation: channels are cut into segments of S = gcd(G, A) that share one weight
   scale and one activation scale; each segment's sum of code products is an exact integer
   (|sum| <= 64 * S, held in int64)
5. dequantise: y = sum over segments, in order, of acc * s_act * s_weight in float64; with
   per-channel activation scales (A = 1) the segments are single products, so the float64 sum
   runs over activation-scaled codes instead (same value, one matmul per weight group)
6. output rotation (if stored): y = (y as float32 blocks of C) @ R_out_c

The per-step table must have exactly one row per configured flow step; any other count, or a
step outside it, is an error rather than a silent fallback to some other scale.
"""

from __future__ import annotations

import math

import numpy as np

from vla_edge.errors import PackError
from vla_edge.packs.w4a4 import QMAX, QMIN, W4A4Layer


def rotate_input(x: np.ndarray, perm: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    n, b, _ = blocks.shape
    xp = x[..., perm].astype(np.float64).reshape(-1, n, b)
    return np.einsum("tnb,nbc->tnc", xp, blocks.astype(np.float64)).reshape(x.shape).astype(np.float32)


def rotate_output(y: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    n, c, _ = blocks.shape
    out = np.einsum("tnc,ncd->tnd", y.astype(np.float64).reshape(-1, n, c), blocks.astype(np.float64))
    return out.reshape(y.shape).astype(np.float32)


def per_token_scales(x: np.ndarray, group: int) -> np.ndarray:
    """Dynamic scales [tokens, in / group]: max|x| / 7 per token and channel group."""
    t, k = x.shape
    return (np.abs(x).reshape(t, k // group, group).max(axis=-1) / np.float32(QMAX)).astype(np.float32)


def quantize(x: np.ndarray, scales: np.ndarray, group: int) -> np.ndarray:
    """float32 x [tokens, in] and scales [tokens or 1, in / group] -> int8 codes in [-8, 7]."""
    s = np.repeat(scales.astype(np.float32), group, axis=-1)
    safe = np.where(s > 0, s, np.float32(1.0))
    q = np.rint(x.astype(np.float32) / safe)
    return np.where(s > 0, np.clip(q, QMIN, QMAX), 0).astype(np.int8)


def integer_accumulators(qx: np.ndarray, qw: np.ndarray, segment: int) -> np.ndarray:
    """int64 [tokens, out, in / segment]: exact sums of code products per segment. float64
    products of integers this small are exact (|sum| <= 64 * segment < 2**53), so BLAS does it."""
    t, k = qx.shape
    n_seg = k // segment
    acc = np.einsum("tsk,osk->tos", qx.astype(np.float64).reshape(t, n_seg, segment),
                    qw.astype(np.float64).reshape(qw.shape[0], n_seg, segment), optimize=True)
    return acc.astype(np.int64)


def w4a4_matmul(qx: np.ndarray, act_scale: np.ndarray, qw: np.ndarray, wscale: np.ndarray,
                weight_group: int, act_group: int) -> np.ndarray:
    """Dequantised product float64 [tokens, out] of activation codes [tokens, in] (scales
    [tokens or 1, in / act_group]) and weight codes [out, in] (scales [out, in / weight_group])."""
    t, k = qx.shape
    segment = math.gcd(weight_group, act_group)
    sa = np.broadcast_to(act_scale.astype(np.float64), (t, k // act_group))
    sw = wscale.astype(np.float64)
    if segment == 1:  # per-channel activation scales: no shared scale to factor out of a sum
        xs = qx.astype(np.float64) * np.repeat(sa, act_group, axis=1)
        y = np.zeros((t, qw.shape[0]))
        for g in range(k // weight_group):
            cols = slice(g * weight_group, (g + 1) * weight_group)
            y += (xs[:, cols] @ qw[:, cols].T.astype(np.float64)) * sw[:, g]
        return y
    acc = integer_accumulators(qx, qw, segment)
    seg = np.arange(k // segment)
    sa_seg = sa[:, seg * segment // act_group]  # [t, n_seg]
    sw_seg = sw[:, seg * segment // weight_group]  # [out, n_seg]
    return np.einsum("tos,ts,os->to", acc.astype(np.float64), sa_seg, sw_seg)


class W4A4Linear:
    """Callable (x [tokens, in] float32, step, num_steps) -> float32 [tokens, out], no bias."""

    def __init__(self, layer: W4A4Layer, act_scales: str, num_steps: int | None):
        self.layer, self.mode, self.num_steps = layer, act_scales, num_steps

    def activation_scales(self, x: np.ndarray, step: int | None, num_steps: int | None) -> np.ndarray:
        layer = self.layer
        if self.mode == "per_token":
            return per_token_scales(x, layer.act_group)
        table = layer.act_scale
        if num_steps != table.shape[0] or step is None or not 0 <= step < table.shape[0]:
            raise PackError(f"tensor '{layer.name}' (W4A4 act_scale)",
                            f"scale table has {table.shape[0]} rows but the model runs {num_steps} flow steps "
                            f"(asked for step {step}); per-step scales are only valid for the step count they "
                            "were calibrated with")
        return table[step][None, :]

    def __call__(self, x: np.ndarray, step: int | None, num_steps: int | None) -> np.ndarray:
        layer = self.layer
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).astype(np.float32)
        xr = rotate_input(x2, layer.perm, layer.rot_in)
        scales = self.activation_scales(xr, step, num_steps)
        qx = quantize(xr, scales, layer.act_group)
        y = w4a4_matmul(qx, scales, layer.codes, layer.wscale, layer.weight_group, layer.act_group)
        y = y.astype(np.float32)
        if layer.rot_out is not None:
            y = rotate_output(y, layer.rot_out)
        return y.reshape(lead + (y.shape[-1],))
