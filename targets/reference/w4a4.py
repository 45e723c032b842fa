"""W4A4 linear layers exactly as a pack defines them: the bit-exact oracle for GPU kernels.

For a layer `L` (weight [out, in], groups of `group_size` input channels, G = in / group_size)
the pack stores, next to a float view of `L` that is never executed:

- `L.w4a4.qweight` I8 [out, in]: 4-bit weight codes 0..15 (GPTQ/RTN asymmetric),
- `L.w4a4.zeros`   I8 [out, G]: zero points 0..15, `L.w4a4.scales` F32 [out, G],
  so the weight (in the rotated basis) is W'[o, c] = scales[o, g(c)] * (qweight[o, c] - zeros[o, g(c)]),
- `L.w4a4.rotation` F32 [in, in]: orthogonal R applied to the activations, x' = x @ R
  (the weights were quantised as W' = W @ R, so x' W'^T = x W^T before quantisation),
- `L.w4a4.act_scale` F32 [steps, G]: static activation scale per flow step and input group.

Execution at flow step k: x' = x @ R (float64, rounded to float32); activations to 4 bits,
qa = clip(round_half_even(x' / act_scale[k, g]), -8, 7); per group an integer dot product
acc[t, o, g] = sum_c qa[t, c] * (qweight[o, c] - zeros[o, g]) (exact: int64); then
y[t, o] = sum_g (act_scale[k, g] * scales[o, g]) * acc[t, o, g] in float64, returned as float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_edge.errors import PackError

SUFFIXES = ("qweight", "zeros", "scales", "rotation", "act_scale")
A_MIN, A_MAX = -8, 7  # signed 4-bit activations
W_MAX = 15  # unsigned 4-bit weight codes


@dataclass(frozen=True)
class W4A4Layer:
    name: str
    qweight: np.ndarray  # int8 [out, in], 0..15
    zeros: np.ndarray  # int8 [out, G]
    scales: np.ndarray  # float32 [out, G]
    rotation: np.ndarray  # float32 [in, in]
    act_scale: np.ndarray  # float32 [steps, G]

    @property
    def group_size(self) -> int:
        return self.qweight.shape[1] // self.scales.shape[1]

    def check(self, num_steps: int) -> None:
        """Every shape and range the execution relies on; a table for another step count is an
        error (a silent fallback to a neighbouring step would run a different model)."""
        out, n_in = self.qweight.shape
        groups = self.scales.shape[1] if self.scales.ndim == 2 else -1
        expect = {"scales": (out, groups), "zeros": (out, groups), "rotation": (n_in, n_in),
                  "act_scale": (num_steps, groups)}
        if groups <= 0 or n_in % groups:
            raise PackError(f"{self.name}.w4a4.scales", f"shape {list(self.scales.shape)}: expected [{out}, G] with G "
                                                        f"dividing the input width {n_in}")
        for suffix, shape in expect.items():
            got = getattr(self, suffix).shape
            if got != shape:
                what = f" (one row per flow step: the config runs {num_steps} steps)" if suffix == "act_scale" else ""
                raise PackError(f"{self.name}.w4a4.{suffix}", f"shape {list(got)}, expected {list(shape)}{what}")
        if self.qweight.min() < 0 or self.qweight.max() > W_MAX or self.zeros.min() < 0 or self.zeros.max() > W_MAX:
            raise PackError(f"{self.name}.w4a4.qweight", "4-bit codes and zero points must lie in 0..15")
        if not (np.all(np.isfinite(self.act_scale)) and np.all(self.act_scale > 0)):
            raise PackError(f"{self.name}.w4a4.act_scale", "activation scales must be finite and > 0")
        r = self.rotation.astype(np.float64)
        if np.max(np.abs(r @ r.T - np.eye(n_in))) > 1e-3:
            raise PackError(f"{self.name}.w4a4.rotation", "not orthogonal (R R^T != I within 1e-3)")


def quantize_activations(x_rot: np.ndarray, act_scale: np.ndarray, group_size: int) -> np.ndarray:
    """float32 [T, in] -> int64 [T, G, group_size] 4-bit codes with the step's static scales."""
    t, n_in = x_rot.shape
    grouped = x_rot.astype(np.float64).reshape(t, n_in // group_size, group_size)
    return np.clip(np.rint(grouped / act_scale.astype(np.float64)[None, :, None]), A_MIN, A_MAX).astype(np.int64)


def w4a4_linear(x: np.ndarray, layer: W4A4Layer, step: int) -> np.ndarray:
    """y = W4A4(x) at flow step `step`; x [..., in] -> [..., out] float32."""
    lead, n_in = x.shape[:-1], x.shape[-1]
    gs = layer.group_size
    x_rot = (x.reshape(-1, n_in).astype(np.float64) @ layer.rotation.astype(np.float64)).astype(np.float32)
    qa = quantize_activations(x_rot, layer.act_scale[step], gs)
    out = layer.qweight.shape[0]
    qw = (layer.qweight.astype(np.int64).reshape(out, -1, gs) - layer.zeros.astype(np.int64)[:, :, None])
    acc = np.einsum("tgc,ogc->tog", qa, qw)  # integer-exact
    scale = layer.act_scale[step].astype(np.float64)[None, :] * layer.scales.astype(np.float64)
    y = np.einsum("tog,og->to", acc.astype(np.float64), scale)
    return y.astype(np.float32).reshape(*lead, out)


def dequantized_weight(layer: W4A4Layer) -> np.ndarray:
    """The float weight the layer approximates in the original basis (W' R^T); a view for tools
    and comparisons, never what the reference target executes."""
    out, n_in = layer.qweight.shape
    gs = layer.group_size
    w_rot = layer.scales.astype(np.float64)[:, :, None] * (
        layer.qweight.astype(np.float64).reshape(out, -1, gs) - layer.zeros.astype(np.float64)[:, :, None])
    return (w_rot.reshape(out, n_in) @ layer.rotation.astype(np.float64).T).astype(np.float32)


def load_layers(weights, names: list[str], num_steps: int) -> dict[str, W4A4Layer]:
    """W4A4 layers listed by a pack's manifest, read from its GGUF (`weights(name)` -> array) and
    checked against the configured number of flow steps."""
    layers = {}
    for name in names:
        parts = {s: weights(f"{name}.w4a4.{s}") for s in SUFFIXES}
        layer = W4A4Layer(name, parts["qweight"].astype(np.int8), parts["zeros"].astype(np.int8),
                          parts["scales"].astype(np.float32), parts["rotation"].astype(np.float32),
                          parts["act_scale"].astype(np.float32))
        layer.check(num_steps)
        layers[name] = layer
    return layers
