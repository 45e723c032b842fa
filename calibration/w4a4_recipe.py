"""`pack quantize SRC --recipe w4a4 --calib CALIB`: a W4A4 pack made from a float pack and its
calibration, in the form the reference W4A4 path executes (sdk/packs/w4a4.py, targets/reference/
w4a4.py).

Which layers: every matrix of the action expert that no recipe keeps in float (`attn_q/k/v`,
`attn_output`, `ffn_gate/up/down` of each expert layer) — the layers Omega-QVLA quantises; the
sensitive small projections (action in/out, time MLP, AdaRMSNorm modulation) stay float, as in
every other recipe. Everything else is copied from SRC unchanged.

Per layer, from the calibration's per-step statistics of its input x (sum of x[c]^2 and row count
per flow step and channel):

1. permutation P: input channels sorted by mean squared activation (all steps), so that each
   rotation block holds channels of similar energy. A block then gets one activation scale that
   fits all its channels, instead of one outlier channel widening the scale of a block of quiet
   ones (DuQuant's zig-zag balances energy *across* blocks because it uses one scale per token;
   here every block has its own scale, so like goes with like).
2. rotation R: block-diagonal, each block a Walsh-Hadamard matrix with a seeded random sign per
   row, divided by sqrt(B) (orthogonal; QuaRot's randomised Hadamard). It spreads each channel over
   its block, so the rotated values of a block are close to Gaussian with a common variance.
3. activation scales, per flow step and rotation block (act_group_size = B): an orthogonal block
   preserves every token's sum of squares inside the block, so the mean squared *rotated*
   activation of block b at step s is exactly the mean over the block's channels of
   sum_sq[s, c] / count[s] — no second pass over the data is needed. The scale is
   GAUSSIAN_CLIP * sqrt(that) / 7: the clipping point that minimises the mean squared error of
   the signed 4-bit grid (-8..7) for Gaussian values (2.37 sigma, computed numerically, see the
   test); the Gaussian shape is the assumption the rotation is there to make true.
4. weights: W P R on a signed 4-bit grid, one scale per output row and WEIGHT_GROUP input columns,
   the scale picked per group from a few clipping ratios to minimise the rounding error weighted
   by the rotated channels' importance (step 3's block means, over all steps).

Nothing is folded: codes, scales, permutation, rotation and the per-step tables are stored as
built, so the pack's manifest (`quantization.w4a4`, rotation kind `duquant`) describes it exactly
and `pack verify` / loading check every tensor against it. The calibration is refused before
anything is written when it was not collected on SRC, with another flow step count, or lacks a
layer (calibration/matching.py names what differs).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.errors import ConfigError, PackError
from vla_edge.packs.gguf_io import PlannedTensor
from vla_edge.packs.hashing import sha256_file
from vla_edge.packs.manifest import W4A4
from vla_edge.packs.pack import Pack
from vla_edge.packs.quantize import write_derived_pack
from vla_edge.packs.w4a4 import QMAX, QMIN, W4A4Layer, describe_rotation, layer_group

from .calibfile import load_calibration
from .matching import check_matches
from .stats import TensorStats

RECIPE = "w4a4"
ROTATION_BLOCK = 64  # Hadamard block size (and activation scale group); cut to the layers' common divisor
WEIGHT_GROUP = 128  # input columns per weight scale (Omega-QVLA's GPTQ block)
GAUSSIAN_CLIP = 2.37  # MSE-optimal clip of the -8..7 grid for N(0, 1), in standard deviations
WEIGHT_CLIP_RATIOS = np.linspace(1.0, 0.7, 7)  # fractions of a group's max |w| tried as its clip point
ACT_SCALE_FLOOR = 1e-8  # a block that never fired still needs a positive scale (pack check: > 0)
ROTATION_SEED = 0
FLOAT_SOURCES = ("F32", "F16", "BF16")


def w4a4_layer_names(pack: Pack) -> list[str]:
    """The action expert's non-sensitive matrices, in tensor-inventory order."""
    specs = pack.family.tensor_specs(pack.config)
    return [n for n, s in specs.items() if n.startswith("action.") and s.is_matrix and not s.sensitive]


def hadamard(n: int) -> np.ndarray:
    """Sylvester Walsh-Hadamard matrix of order n (a power of two), entries +-1."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"Hadamard order must be a power of two, got {n}")
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def rotation_blocks(width: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """[width / block, block, block] orthogonal blocks diag(+-1) H / sqrt(block)."""
    h = hadamard(block) / math.sqrt(block)
    signs = rng.choice([-1.0, 1.0], size=(width // block, block, 1))
    return (signs * h[None]).astype(np.float32)


def mean_square(stats: TensorStats, name: str) -> np.ndarray:
    """[steps, n_in] mean squared activation per flow step and channel; every step must have rows."""
    empty = np.flatnonzero(stats.count == 0)
    if empty.size:
        raise ConfigError(f"--calib:{name}", f"no activation rows recorded at flow step {int(empty[0])}")
    return stats.sum_sq / stats.count[:, None]


def energy_permutation(mean_sq: np.ndarray) -> np.ndarray:
    """Input channels by decreasing mean squared activation over all steps (ties: channel order)."""
    return np.argsort(-mean_sq.mean(axis=0), kind="stable").astype(np.int64)


def block_mean_square(mean_sq: np.ndarray, perm: np.ndarray, block: int) -> np.ndarray:
    """[steps, n_in / block]: mean squared rotated activation of each block (exact, see step 3)."""
    steps, n_in = mean_sq.shape
    return mean_sq[:, perm].reshape(steps, n_in // block, block).mean(axis=2)


def step_scales(block_ms: np.ndarray, clip: float = GAUSSIAN_CLIP) -> np.ndarray:
    """Per-step, per-block static activation scales: clip * RMS / 7, floored above zero."""
    return np.maximum(clip * np.sqrt(block_ms) / QMAX, ACT_SCALE_FLOOR).astype(np.float32)


def quantize_weight(w: np.ndarray, importance: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """float weight [out, in] (already rotated) -> (int8 codes in -8..7, float32 scales [out, in /
    group]); per (row, group) the clip ratio with the lowest importance-weighted squared error."""
    out, n_in = w.shape
    v = np.asarray(w, np.float64).reshape(out, n_in // group, group)
    imp = np.asarray(importance, np.float64).reshape(1, n_in // group, group)
    peak = np.abs(v).max(axis=2)
    best_err = np.full(peak.shape, np.inf)
    codes = np.zeros(v.shape, np.int8)
    scales = np.zeros(peak.shape, np.float32)
    for ratio in WEIGHT_CLIP_RATIOS:
        s = (peak * ratio / QMAX).astype(np.float32)
        safe = np.where(s > 0, s, np.float32(1.0)).astype(np.float64)[:, :, None]
        q = np.clip(np.rint(v / safe), QMIN, QMAX)
        err = (imp * (v - q * safe) ** 2).sum(axis=2)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        codes[better] = q[better]
        scales[better] = s[better]
    return codes.reshape(out, n_in), scales


def build_layer(name: str, weight: np.ndarray, stats: TensorStats, block: int, weight_group: int,
                act_scales: str, clip: float, rotate: bool = True) -> W4A4Layer:
    """One expert layer in W4A4 form from its float weight [out, in] and input statistics.
    rotate=False keeps channel order and identity blocks (an ablation: what the rotation buys)."""
    n_in = weight.shape[1]
    ms = mean_square(stats, name)
    perm = energy_permutation(ms) if rotate else np.arange(n_in, dtype=np.int64)
    rng = np.random.default_rng([ROTATION_SEED, zlib.crc32(name.encode())])
    rot_in = rotation_blocks(n_in, block, rng) if rotate else np.tile(np.eye(block, dtype=np.float32),
                                                                      (n_in // block, 1, 1))
    group = layer_group(weight_group, n_in)
    block_ms = block_mean_square(ms, perm, block)
    layer = W4A4Layer(name=name, codes=np.zeros(weight.shape, np.int8), wscale=np.zeros(0, np.float32), perm=perm,
                      rot_in=rot_in, rot_out=None, act_scale=None, weight_group=group, act_group=block)
    importance = np.repeat(block_ms.mean(axis=0), block)  # rotated channels: their block's mean square
    layer.codes, layer.wscale = quantize_weight(layer.rotate_weight(weight), importance, group)
    if act_scales == "per_step":
        layer.act_scale = step_scales(block_ms, clip)
    return layer


def _common_block(widths: list[int]) -> int:
    block = math.gcd(ROTATION_BLOCK, *widths)
    if block < 8:
        raise PackError("--recipe w4a4", f"expert widths {sorted(set(widths))} share no power-of-two block of at "
                                         "least 8 channels for the Hadamard rotation")
    return block


def _copier(src: Any, name: str) -> Callable[[], np.ndarray]:
    def produce() -> np.ndarray:
        data, qtype = src.raw(name)
        return np.asarray(data) if qtype.name in ("F32", "F16") else np.asarray(data).view(np.uint8)
    return produce


def build_w4a4_pack(src_dir: str | Path, calib_path: str | Path, out_dir: str | Path, overwrite: bool = False,
                    golden: bool | None = None, act_scales: str = "per_step", clip: float = GAUSSIAN_CLIP,
                    rotate: bool = True, on_tensor: Callable[[str, int], None] | None = None) -> Path:
    """Write `out_dir`: the pack at `src_dir` with its expert matrices in W4A4 form (module doc).

    act_scales: "per_step" (the static tables from CALIB, the point of this recipe) or "per_token"
    (dynamic scales, same rotation and weights: a baseline for measuring what static tables cost).
    clip / rotate=False: ablations for benchmarks/calibration_w4a4.py (other clip point; no rotation).
    golden: record a golden output on the reference target (default: when SRC has one)."""
    if act_scales not in ("per_step", "per_token"):
        raise ConfigError("act_scales", f"expected 'per_step' or 'per_token', got '{act_scales}'")
    src = Pack.open(src_dir, check="sha256")
    m = src.manifest
    if m.quantization.w4a4 is not None:
        raise PackError(str(src.dir / "pack.yaml"), "the pack already holds W4A4 layers (quantization.w4a4); "
                                                    "make the W4A4 pack from its F16/F32 parent")
    names = w4a4_layer_names(src)
    infos = src.weights.tensor_infos()
    for name in names:
        if name not in infos:
            raise PackError(str(src.weights_path), f"tensor '{name}' is missing (run `vla-edge pack verify`)")
        if infos[name].ggml_type not in FLOAT_SOURCES:
            raise PackError(f"{src.weights_path}: tensor '{name}'",
                            f"stored as {infos[name].ggml_type}; the w4a4 recipe starts from float weights (F16/F32): "
                            "re-quantising already rounded weights adds a second rounding error")
    calib = load_calibration(Path(calib_path))
    check_matches(calib, src, names, allow_unused=False)
    specs = src.family.tensor_specs(src.config)
    steps = int(src.config.num_flow_steps)
    block = _common_block([specs[n].shape[1] for n in names])
    layers = {n: build_layer(n, src.weights.float32(n), calib.tensors[n], block, WEIGHT_GROUP, act_scales, clip,
                             rotate) for n in names}
    section = W4A4(weight_group_size=WEIGHT_GROUP, act_scales=act_scales, act_group_size=block,
                   num_steps=steps if act_scales == "per_step" else None, layers=names,
                   rotation=describe_rotation(layers))
    for name, layer in layers.items():
        layer.check(specs[name].shape, section, f"--recipe {RECIPE}")
    planned = [PlannedTensor(n, info.shape, info.ggml_type, _copier(src.weights, n))
               for n, info in infos.items() if n not in layers]
    planned += [t for n in names for t in layers[n].planned()]
    return write_derived_pack(
        src, out_dir, planned, RECIPE, ["reference"], overwrite=overwrite, golden=golden, on_tensor=on_tensor,
        source={"quantized_from": m.name, "parent_weights_sha256": m.files.weights.sha256,
                "parent_recipe": m.quantization.recipe, "quantizer": "vla_edge.calibration.w4a4_recipe",
                "calibration": {"file": str(Path(calib_path).resolve()), "sha256": sha256_file(Path(calib_path)),
                                "samples": len(calib.header["data"]["calibration"]),
                                "target": calib.header["target"]},
                "w4a4": {"rotation": ("sorted-energy permutation + randomised Hadamard blocks" if rotate
                                      else "none (identity permutation and blocks)"),
                         "rotation_seed": ROTATION_SEED, "block": block, "act_scales": act_scales,
                         "act_clip_sigmas": clip, "weight_clip_ratios": [float(r) for r in WEIGHT_CLIP_RATIOS]}},
        quant_exceptions=dict(m.quantization.exceptions), w4a4=section)
