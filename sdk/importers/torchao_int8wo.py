"""The pruned int8 weight-only pi0.5 of the Shallow-π workflow (torchao `Int8WeightOnlyConfig`).

Layout (an assumption, documented in docs/importers.md: no released Shallow-π file could be
inspected here): a checkpoint directory like `--from checkpoint` (model.safetensors, config.json,
statistics, tokenizer.model) whose quantised Linear weights were written with torchao's
safetensors serialisation, which flattens a tensor subclass into `<key>:qdata` (int8 [out, in])
and `<key>:scale` (per output row, torchao's default per-channel symmetric int8 weight-only
scheme, zero point 0); other tensors are plain bf16/fp32 under the checkpoint key names.

Layer counts are read from the checkpoint itself (Shallow-π drops LLM and expert layers), never
from pi0.5's 18. The int8 values are kept exactly: each row becomes Q8_0 blocks whose F16 block
scale is the row's scale (a row whose scale is not representable in F16 to 1e-3 keeps its
dequantised values in F16 instead, recorded in the manifest). A file whose int8 weights lost
their scales (saving `int_repr()` / a plain state dict of the inner data) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PackError
from ..packs.gguf_io import PlannedTensor
from .checkpoint import SourceLoader, SourceTensor, matrix_type, pad_vision_mlp, read_checkpoint, weights_file, \
    write_pack
from .common import safetensors_header, to_numpy

QDATA, SCALE = ":qdata", ":scale"
Q8_BLOCK = 32
SCALE_REL_TOL = 1e-3
_REEXPORT = ("re-export it with torchao's safetensors serialisation (each quantised weight as <key>:qdata + "
             "<key>:scale), or dequantise the model (`weight.dequantize()`) and import the bf16 state dict "
             "with --from checkpoint")


def split_quantized(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str],
                    where: str) -> tuple[dict[str, tuple[int, ...]], dict[str, str], set[str]]:
    """Logical view of the file: `<key>:qdata` + `<key>:scale` pairs become one `<key>` tensor.
    Returns (shapes, dtypes, keys that are int8)."""
    logical_shapes: dict[str, tuple[int, ...]] = {}
    logical_dtypes: dict[str, str] = {}
    int8: set[str] = set()
    for name, shape in shapes.items():
        if name.endswith(SCALE):
            if name[: -len(SCALE)] + QDATA not in shapes:
                raise PackError(f"{where}: tensor '{name}'", f"scale without its '{name[: -len(SCALE)]}{QDATA}'")
            continue
        key = name[: -len(QDATA)] if name.endswith(QDATA) else name
        is_int = "int8" in dtypes[name].lower() or dtypes[name].upper() == "I8"
        if is_int:
            scale = shapes.get(key + SCALE)
            if scale is None:
                raise PackError(f"{where}: tensor '{name}'", f"int8 weights without their scales ('{key}{SCALE}' "
                                                              f"is absent): the scales were stripped on export; "
                                                              f"{_REEXPORT}")
            if int(np.prod(scale)) != shape[0]:
                raise PackError(f"{where}: tensor '{key}{SCALE}'", f"{int(np.prod(scale))} scales, expected one per "
                                                                   f"output row ({shape[0]})")
            int8.add(key)
        elif name.endswith(QDATA):
            raise PackError(f"{where}: tensor '{name}'", f"dtype {dtypes[name]}, expected int8")
        logical_shapes[key] = tuple(shape)
        logical_dtypes[key] = dtypes[name]
    if not int8:
        raise PackError(where, "no int8 weights: not a torchao int8 weight-only export (use --from checkpoint for a "
                               "plain fp32/bf16 checkpoint)")
    return logical_shapes, logical_dtypes, int8


def check_layer_counts(sources: Mapping[str, SourceTensor], where: str) -> None:
    """Pruned stacks: the layer indices left must run 0..n-1 (renumbered) and the LLM and the
    expert must keep the same count (the expert attends to the LLM's cache layer by layer)."""
    counts = {}
    for stack, prefix in (("LLM (pali.blk.*)", "pali.blk."), ("action expert (action.blk.*)", "action.blk.")):
        idx = sorted({int(n.split(".")[2]) for n in sources if n.startswith(prefix)})
        if idx != list(range(len(idx))):
            raise PackError(where, f"{stack} layer indices {idx} are not 0..{len(idx) - 1}: renumber the kept layers "
                                   "(save the pruned model's state dict, whose ModuleList indices are contiguous)")
        counts[stack] = len(idx)
    llm, expert = counts.values()
    if llm != expert:
        raise PackError(where, f"pruned layer counts disagree: LLM has {llm} layers, action expert {expert}; pi0.5's "
                               "expert attends to the LLM's KV cache layer by layer, so both must keep the same count")


def q8_0_blocks(qdata: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int8 rows with one scale each -> raw Q8_0 (per 32 values: F16 scale, 32 int8)."""
    rows, cols = qdata.shape
    d = np.repeat(scale.astype(np.float16).reshape(rows, 1), cols // Q8_BLOCK, axis=1)
    blocks = np.concatenate([d.reshape(rows, -1, 1).view(np.uint8),
                             qdata.astype(np.int8).reshape(rows, -1, Q8_BLOCK).view(np.uint8)], axis=2)
    return np.ascontiguousarray(blocks).reshape(-1)


class Int8Loader:
    """int8 tensors by pack name, read on demand and padded like every SigLIP MLP tensor."""

    def __init__(self, path: Path, sources: Mapping[str, SourceTensor], cfg: Any):
        self.path, self.sources, self.cfg = path, sources, cfg

    def _read(self, suffix: str, name: str) -> np.ndarray:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            return to_numpy(f.get_tensor(self.sources[name].key + suffix))

    def scale(self, name: str) -> np.ndarray:
        s = self._read(SCALE, name).astype(np.float32).reshape(-1)
        v = self.cfg.vision
        return pad_vision_mlp(name, s, v.intermediate_size, v.intermediate_size_stored) \
            if name.endswith("ffn_up.weight") else s

    def qdata(self, name: str) -> np.ndarray:
        v = self.cfg.vision
        return pad_vision_mlp(name, self._read(QDATA, name).astype(np.int8), v.intermediate_size,
                              v.intermediate_size_stored)


def import_torchao_int8wo(src: str | Path, out: str | Path, robot: str = "ur3", overwrite: bool = False,
                          golden: bool | None = None, tokenizer: Path | None = None,
                          norm_stats: Path | None = None) -> Path:
    """Write a pack at `out` from a torchao int8 weight-only (Shallow-π pruned) pi0.5 checkpoint."""
    weights = weights_file(src, "a torchao int8 weight-only pi0.5 export")
    raw_shapes, raw_dtypes, _ = safetensors_header(weights)
    shapes, dtypes, int8 = split_quantized(raw_shapes, raw_dtypes, str(weights))
    ck = read_checkpoint(weights, shapes, dtypes, robot, tokenizer, norm_stats,
                         check_layers=lambda sources: check_layer_counts(sources, str(weights)))
    floats = SourceLoader(weights, ck.sources, ck.cfg)
    ints = Int8Loader(weights, ck.sources, ck.cfg)
    matrix = matrix_type("auto", {d for k, d in dtypes.items() if k not in int8})
    planned, exceptions = [], {}
    for name in ck.specs:
        shape = ck.shapes[name]
        if ck.sources[name].key not in int8:
            planned.append(PlannedTensor(name, shape, "F32" if len(shape) == 1 else matrix,
                                         lambda n=name: floats(n)))
            continue
        s = ints.scale(name)
        fits = bool(np.all(np.abs(s.astype(np.float16).astype(np.float32) - s) <= SCALE_REL_TOL * np.abs(s)))
        if shape[-1] % Q8_BLOCK == 0 and fits:
            planned.append(PlannedTensor(name, shape, "Q8_0", lambda n=name, s=s: q8_0_blocks(ints.qdata(n), s)))
        else:
            why = f"input width {shape[-1]} not a multiple of 32" if fits else "row scales not representable in F16"
            exceptions[name] = f"F16 (dequantised int8): {why}"
            planned.append(PlannedTensor(name, shape, "F16",
                                         lambda n=name, s=s: ints.qdata(n).astype(np.float32) * s[:, None]))
    return write_pack(ck, out, planned, "torchao-int8wo", {
        "imported_from": "torchao-int8wo", "robot_layout": robot, "int8_tensors": len(int8),
        "llm_layers": ck.cfg.llm.num_layers, "expert_layers": ck.cfg.expert.num_layers,
        "int8_storage": "Q8_0: int8 values exact, per-row scale as the F16 block scale"}, exceptions, overwrite, golden)
