"""Omega-QVLA W4A4 `quantized.pt` + the fp16 pi0.5 base checkpoint it applies to -> a W4A4 pack.

Layout (github.com/UCMP13753/Omega-QVLA @ 4ddc959: tools/build_pi05_a2lite_gptq_perstep.py writes
it, gr00t/quantization/gptq_layers.py GptqLinear reads it): `torch.save` of a dict mapping each
quantised openpi module name (`paligemma_with_expert.gemma_expert.model.layers.{i}.self_attn.q_proj`,
…`.mlp.down_proj`) to a record, plus `"__meta__"` (format `pi05_a2lite_gptq_perstep_v1`, num_steps,
block sizes, bits). A record (format `dit_svdquant_v1`, rank 0) holds

- `weight_res_q` fp16 [out, in]: the GPTQ/RTN weight in the rotated basis R_out W P R_in, already
  on a symmetric int4 grid (value = q * s, q in -8..7, one s per row and GPTQ block of 128
  input columns) but stored dense — the scales themselves are not saved;
- `act_scale_table` fp32 [num_steps, in]: static activation scale per denoising step and rotated
  input channel (quantile 99.9 % of |x| / 7);
- `duquant_rotation_perm` int64 [in] + `duquant_rotation_blocks` fp16 [in/B, B, B] (and the dense
  `duquant_rotation` = P · blockdiag(R)), `duquant_rotation_out(_blocks)` for the output side;
- `lowrank_A/B` ([out, 0] / [in, 0]), `weight_bits`, `a_bits`, `rank`, calibration counts.

The importer recovers integer codes and per-(row, group) scales from the dense grid (checking
every value is reproduced to fp16 rounding), keeps rotations and the per-step table as they are,
and writes them in the pack's W4A4 form (sdk/packs/w4a4.py), with the rotation's block sizes in
the manifest; every other tensor comes from the base checkpoint. Each recovered weight must match
the base's weight put in the same rotated basis to within 4-bit rounding error
(BASE_REL_ERROR_MAX), so a --base the file was not built from is refused rather than silently
mixed with it. The file is loaded with torch.load(weights_only=True): a pickle that needs code
to load is refused, never run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, PackError
from ..packs.manifest import W4A4
from ..packs.w4a4 import QMAX, QMIN, W4A4Layer, describe_rotation, layer_group
from .checkpoint import (SourceLoader, map_keys, matrix_type, plan_tensors, read_checkpoint, weights_file,
                         write_pack)
from .common import load_torch_weights_only, safetensors_header, to_numpy

log = logging.getLogger(__name__)

PACK_NAME = "quantized.pt"
META_FORMAT = "pi05_a2lite_gptq_perstep_v1"
RECORD_FORMAT = "dit_svdquant_v1"
GPTQ_BLOCK = 128  # Omega-QVLA README: --gptq-block-size 128; not stored in the file
GRID_REL_TOL = 2.0 ** -9  # fp16 storage of q * s: a few half-ulps
ACT_SCALE_FLOOR = 1e-8  # GptqLinear clamps the table to this on load (fp16-underflow guard)
# Largest relative Frobenius error between a record's dequantised weight and the --base weight in
# the same rotated basis. Rounding to a symmetric 4-bit grid with s = max|v| / 7 per row and group
# leaves errors of at most s/2, about uniform (RMS s/sqrt(12)); relative to the group's RMS that is
# c / (7 sqrt(12)) with c = max|v| / RMS <= sqrt(G), so <= sqrt(128) / 24.2 = 0.47 for any weight
# distribution (the MSE alpha search only lowers it; Hadamard-rotated weights have c ~ 3: ~0.12).
# An unrelated base of the same scale gives ~sqrt(2) (independent weights). Measured on the test
# model: 0.100-0.104 for the right base, 1.39-1.43 for another seed's weights. GPTQ (no real file
# could be downloaded) trades some weight error for output error; the ~5x margin over the measured
# RTN error is meant to cover that, but it is not measured on a GPTQ file.
BASE_REL_ERROR_MAX = 0.5
_EXPERT_EXAMPLE = "paligemma_with_expert.gemma_expert.model.layers.0.self_attn.q_proj"
_GR00T = re.compile(r"(^|\.)(action_head\.model\.transformer_blocks|backbone\.eagle_model)\.")
_SENSITIVE_WHY = ("small-dimension projections (state/action in/out, time MLP) collapse under 4-bit activations "
                  "(Omega-QVLA README, pitfalls)")


def _source_files(src: Path, base: Path | None) -> tuple[Path, Path]:
    qpath = src / PACK_NAME if src.is_dir() else src
    if not qpath.is_file():
        raise PackError(str(qpath), f"missing: an Omega-QVLA pack is a {PACK_NAME} file (or a directory holding one)")
    if base is None:
        raise ConfigError("--base", f"{qpath} holds only the quantised layers; pass the fp16 pi0.5 base checkpoint "
                                    "it was built from (openpi/LeRobot directory with model.safetensors)")
    return qpath, weights_file(base, "the fp16 pi0.5 base checkpoint")


def _meta(container: Any, where: str) -> dict[str, Any]:
    if not isinstance(container, dict):
        raise PackError(where, f"expected a dict of per-layer records, got {type(container).__name__}")
    meta = container.get("__meta__")
    names = [k for k in container if k != "__meta__"]
    if any(_GR00T.search(str(n)) for n in names) or "gr00t" in str((meta or {}).get("format", "")).lower():
        raise PackError(where, "this is an Omega-QVLA GR00T-N1.5 pack: family 'gr00t-n1.5' is recognised but not "
                               "supported yet (only pi0.5)")
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else meta
        raise PackError(f"{where}: __meta__.format", f"'{got}', expected '{META_FORMAT}' (the pi0.5 expert pack "
                                                      "tools/build_pi05_a2lite_gptq_perstep.py writes)")
    for key in ("w_bits", "a_bits"):
        if meta.get(key) != 4:
            raise PackError(f"{where}: __meta__.{key}", f"{meta.get(key)}: only W4A4 packs are supported")
    if not isinstance(meta.get("num_steps"), int) or meta["num_steps"] < 1:
        raise PackError(f"{where}: __meta__.num_steps", f"expected a positive step count, got {meta.get('num_steps')}")
    if not names:
        raise PackError(where, "no quantised layer records")
    return meta


def _array(record: Mapping[str, Any], key: str, where: str) -> np.ndarray:
    import torch

    value = record.get(key)
    if not isinstance(value, torch.Tensor):
        raise PackError(f"{where}.{key}", "missing (or not a tensor)")
    return to_numpy(value)


def grid_codes(values: np.ndarray, group: int, where: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Dense weights already on a symmetric int4 grid -> (codes int8 [out, in], scales float32
    [out, in/group], max relative reconstruction error). Per (row, group) the scale is the
    largest s = max|v| / k (k = 1..8) for which every value is an integer multiple of s in -8..7
    to fp16 rounding; equivalent factorisations (all codes even) give the same weights."""
    out, n_in = values.shape
    v = values.astype(np.float64).reshape(out, n_in // group, group)
    peak = np.abs(v).max(axis=2)
    codes = np.zeros(v.shape, np.int8)
    scales = np.zeros(peak.shape)
    todo = peak > 0
    for k in range(1, 9):
        s = np.where(todo, peak, 1.0) / k
        q = np.rint(v / s[:, :, None])
        fits = (np.all((q >= QMIN) & (q <= QMAX), axis=2)
                & np.all(np.abs(q * s[:, :, None] - v) <= GRID_REL_TOL * np.abs(v) + 1e-30, axis=2) & todo)
        codes[fits] = q[fits]
        scales[fits] = s[fits]
        todo &= ~fits
    if np.any(todo):
        row, grp = map(int, np.argwhere(todo)[0])
        raise PackError(where, f"not on a signed 4-bit grid with one scale per row and group of {group} input "
                               f"columns (first misfit: row {row}, group {grp}); pass --group-size if the pack was "
                               f"built with another --gptq-block-size than {GPTQ_BLOCK}")
    scales = scales.astype(np.float32)
    recon = codes.astype(np.float64) * scales.astype(np.float64)[:, :, None]
    err = float(np.max(np.abs(recon - v)) / max(float(np.max(np.abs(v))), 1e-30))
    return codes.reshape(out, n_in), scales, err


def _tiles(record: Mapping[str, Any], key: str, width: int) -> bool:
    blocks = record.get(key + "_blocks")
    return blocks is not None and blocks.dim() == 3 and blocks.shape[0] * blocks.shape[1] == width


def _blocks(record: Mapping[str, Any], key: str, width: int, where: str) -> np.ndarray | None:
    """Block-diagonal rotation as [n, B, B]: the stored blocks when they tile the width (as
    GptqLinear's fast path requires), else the dense matrix as one block."""
    if _tiles(record, key, width):
        return _array(record, key + "_blocks", where).astype(np.float32)
    if record.get(key) is not None:
        dense = _array(record, key, where).astype(np.float32)
        if dense.shape != (width, width):
            raise PackError(f"{where}.{key}", f"shape {list(dense.shape)}, expected [{width}, {width}]")
        return dense[None]
    return None


def convert_record(name: str, record: Any, shape: tuple[int, ...], num_steps: int, group: int,
                   where: str) -> tuple[W4A4Layer, float]:
    """One Omega-QVLA record -> a checked W4A4 layer (+ its weight reconstruction error)."""
    if not isinstance(record, dict):
        raise PackError(where, f"expected a record dict, got {type(record).__name__}")
    if record.get("format") != RECORD_FORMAT:
        raise PackError(f"{where}.format", f"'{record.get('format')}', expected '{RECORD_FORMAT}'")
    rank = int(record.get("rank", 0) or 0)
    low_a = record.get("lowrank_A")
    if rank or (low_a is not None and low_a.shape[-1]):
        raise PackError(f"{where}.lowrank_A", f"SVDQuant low-rank branch of rank {rank or low_a.shape[-1]}: not "
                                              "supported (only rank-0 W4A4 packs)")
    for key in ("weight_bits", "a_bits"):
        if record.get(key) != 4:
            raise PackError(f"{where}.{key}", f"{record.get(key)}, expected 4")
    out, n_in = shape
    weight = _array(record, "weight_res_q", where)
    if weight.shape != (out, n_in):
        raise PackError(f"{where}.weight_res_q", f"shape {list(weight.shape)}, the base checkpoint's layer is "
                                                 f"{[out, n_in]}")
    table = _array(record, "act_scale_table", where).astype(np.float32)
    if table.shape != (num_steps, n_in):
        raise PackError(f"{where}.act_scale_table", f"shape {list(table.shape)}, expected [{num_steps}, {n_in}] "
                                                    "(one row per denoising step, one scale per input channel)")
    if not np.all(np.isfinite(table)):
        raise PackError(f"{where}.act_scale_table", "holds inf/nan")
    perm = (_array(record, "duquant_rotation_perm", where).astype(np.int64)
            if _tiles(record, "duquant_rotation", n_in) else np.arange(n_in, dtype=np.int64))
    rot_in = _blocks(record, "duquant_rotation", n_in, where)
    if rot_in is None:  # no rotation recorded: identity, as GptqLinear runs it
        rot_in = np.ones((n_in, 1, 1), np.float32)
    if n_in % group:
        raise PackError(f"{where}.weight_res_q", f"input width {n_in} is not a multiple of the group size {group}")
    codes, scales, err = grid_codes(weight, group, f"{where}.weight_res_q")
    layer = W4A4Layer(name=name, codes=codes, wscale=scales, perm=perm, rot_in=rot_in,
                      rot_out=_blocks(record, "duquant_rotation_out", out, where),
                      act_scale=np.maximum(table, np.float32(ACT_SCALE_FLOOR)), weight_group=group, act_group=1)
    return layer, err


def import_omega_qvla(src: str | Path, out: str | Path, base: Path | None = None, robot: str = "ur3",
                      overwrite: bool = False, golden: bool | None = None, tokenizer: Path | None = None,
                      norm_stats: Path | None = None, allow_sensitive_a4: bool = False,
                      group_size: int = GPTQ_BLOCK) -> Path:
    """Write a W4A4 pack at `out` from an Omega-QVLA pi0.5 `quantized.pt` and its fp16 base."""
    qpath, weights = _source_files(Path(src), None if base is None else Path(base))
    if group_size < 1:
        raise ConfigError("--group-size", f"expected a positive number of input columns, got {group_size}")
    shapes, dtypes, _ = safetensors_header(weights)
    ck = read_checkpoint(weights, shapes, dtypes, robot, tokenizer, norm_stats)
    container = load_torch_weights_only(qpath)
    meta = _meta(container, str(qpath))
    steps = meta["num_steps"]
    if steps != ck.cfg.num_flow_steps:
        raise PackError(f"{qpath}: act_scale_table", f"per-step scales for {steps} denoising steps, but the base "
                                                      f"checkpoint runs {ck.cfg.num_flow_steps} (config.json); the "
                                                      "table is only valid for the step count it was calibrated with")
    layers, errors, base_errors, sensitive = {}, {}, {}, []
    base_values = SourceLoader(weights, ck.sources, ck.cfg)
    for module, record in container.items():
        if module == "__meta__":
            continue
        where = f"{qpath}: record '{module}'"
        weight_key = f"{module}.weight"
        found = map_keys({weight_key: tuple(getattr(record.get("weight_res_q"), "shape", ()))}
                         if isinstance(record, dict) else {weight_key: ()}, {weight_key: "F16"}, where)
        if not found:  # a tensor map_keys knows but pi0.5 inference does not use (LM heads, prefix norm)
            raise PackError(where, f"names no Linear module of the pi0.5 action expert ('{weight_key}' is unused "
                                   f"by pi0.5 inference); expected e.g. '{_EXPERT_EXAMPLE}'")
        name = next(iter(found))
        if not name.startswith("action."):
            raise PackError(where, "W4A4 outside the action expert is not supported: Omega-QVLA runs PaliGemma as "
                                   "run-time DuQuant, so the file has no calibrated activation scales for it")
        spec = ck.specs.get(name)
        if spec is None:
            raise PackError(where, f"maps to {name}, which the base checkpoint does not have (its expert has "
                                   f"{ck.cfg.expert.num_layers} layers): the pack was built for another model")
        if spec.sensitive:
            if not allow_sensitive_a4:
                raise PackError(where, f"{name} is kept in its original precision by vla-edge because "
                                       f"{_SENSITIVE_WHY}; pass --allow-sensitive-a4 to import it as W4A4 anyway")
            sensitive.append(name)
        layer, errors[name] = convert_record(name, record, spec.shape, steps, layer_group(group_size, spec.shape[1]),
                                             where)
        layer.check(spec.shape, _section({name: layer}, group_size, steps), where)
        base_errors[name] = check_base_weight(layer, base_values(name), where)
        layers[name] = layer
    if sensitive:
        log.warning("warning: W4A4 kept on sensitive layers %s (--allow-sensitive-a4): %s; compare the pack with "
                    "its fp32 parent (vla-edge pack compare) before using it", sensitive, _SENSITIVE_WHY)
    section = _section({n: layers[n] for n in sorted(layers, key=list(ck.specs).index)}, group_size, steps)
    matrix = matrix_type("auto", {dtypes[s.key] for s in ck.sources.values()})
    rest = {n: s for n, s in ck.specs.items() if n not in layers}
    planned, exceptions = plan_tensors(base_values, ck.shapes, rest, matrix, str(weights))
    planned += [t for n in section.layers for t in layers[n].planned()]
    return write_pack(ck, out, planned, "omega-qvla-w4a4", {
        "imported_from": "omega-qvla", "quantized_pt": str(qpath), "robot_layout": robot,
        "omega_meta": {k: v for k, v in meta.items() if isinstance(v, (int, float, str))},
        "w4a4_weight_max_rel_error": max(errors.values()),
        "w4a4_vs_base_max_rel_error": max(base_errors.values()), "sensitive_layers_a4": sensitive,
        "act_scale_floor": ACT_SCALE_FLOOR}, exceptions, overwrite, golden, targets=("reference",), w4a4=section)


def check_base_weight(layer: W4A4Layer, base: np.ndarray, where: str) -> float:
    """Relative Frobenius error of the layer's dequantised weight against the --base weight put
    in the same rotated basis; refuses a base the quantised file was not made from (shapes alone
    do not tell: every pi0.5 checkpoint has them)."""
    expected = layer.rotate_weight(base)
    err = float(np.linalg.norm(layer.dequantised() - expected) / max(float(np.linalg.norm(expected)), 1e-30))
    if not err <= BASE_REL_ERROR_MAX:
        raise PackError(where, f"its weight differs from the --base checkpoint's {layer.name} in the same rotated "
                               f"basis (R_out W P R_in) by relative Frobenius error {err:.3g} > {BASE_REL_ERROR_MAX} "
                               "(4-bit rounding stays below it): the --base checkpoint is not the one the quantised "
                               "file was made from")
    return err


def _section(layers: Mapping[str, W4A4Layer], group: int, steps: int) -> W4A4:
    return W4A4(weight_group_size=group, act_scales="per_step", act_group_size=1, num_steps=steps,
                layers=list(layers), rotation=describe_rotation(layers))

