"""The pruned int8 weight-only pi0.5 of the Shallow-π workflow (torchao `Int8WeightOnlyConfig`).

Layout: a checkpoint directory like `--from checkpoint` (model.safetensors, config.json,
statistics, tokenizer.model) whose model.safetensors was written the way torchao writes tensor
subclasses (torchao.prototype.safetensors `flatten_tensor_state_dict`, checked against torchao
0.18 in the tests): an `Int8Tensor` weight `<module>.weight` becomes the tensors
`<module>._weight_qdata` (int8 [out, in]), `<module>._weight_scale` and `<module>._weight_zero_point`
(one per block of the tensor's `block_size`: [1, in] per row, the default; [1, g] per group;
[out, in] per tensor), and the safetensors header metadata holds `tensor_names` (JSON list of
the original keys) plus, per key, a JSON record with `_type` ("Int8Tensor" / "Tensor"), `_data`
(block_size, dtype, act_quant_kwargs) and `_tensor_data_names`. Plain tensors keep their keys.
The Shallow-π release itself could not be inspected here (docs/importers.md).

Layer counts are read from the checkpoint itself (Shallow-π drops LLM and expert layers), never
from pi0.5's 18. The int8 values are kept exactly: a weight whose scale is constant over every
32-column block (per row, or per group of a multiple of 32) becomes Q8_0 blocks whose F16 block
scale is that scale; anything else (scales not representable in F16 to 1e-3, non-zero zero
points, groups that split a block) keeps its dequantised values in F16, recorded in the manifest.
A file whose int8 weights lost their scales or their torchao metadata is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PackError
from ..packs.gguf_io import PlannedTensor
from .checkpoint import SourceLoader, SourceTensor, matrix_type, pad_vision_mlp, read_checkpoint, weights_file, \
    write_pack
from .common import safetensors_header, to_numpy

INT8_TENSOR, PLAIN_TENSOR = "Int8Tensor", "Tensor"
Q8_BLOCK = 32
SCALE_REL_TOL = 1e-3
_TORCH_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
_REEXPORT = ("re-export it with torchao's safetensors serialisation (torchao.prototype.safetensors "
             "flatten_tensor_state_dict(model.state_dict()) -> safetensors save_file(tensors, path, metadata=metadata)), "
             "or dequantise the model (`weight.dequantize()`) and import the bf16 state dict with --from checkpoint")


@dataclass(frozen=True)
class Int8Weight:
    """Where one flattened torchao Int8Tensor lives in the file."""

    qdata: str
    scale: str
    zero_point: str | None
    block: tuple[int, int]


def _json_entry(metadata: Mapping[str, str], key: str, where: str) -> Any:
    text = metadata.get(key)
    if text is None:
        raise PackError(f"{where}: header metadata '{key}'", "missing (every name in tensor_names needs its torchao "
                                                             "record)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PackError(f"{where}: header metadata '{key}'", f"not JSON ({exc})") from exc


def _int8_weight(name: str, record: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
                 dtypes: Mapping[str, str], where: str) -> Int8Weight:
    """Checks one Int8Tensor record against the tensors the file holds for it."""
    module, attr = name.rsplit(".", 1)
    prefix = f"{module}._{attr}_"
    qdata, scale, zero = prefix + "qdata", prefix + "scale", prefix + "zero_point"
    attrs = record.get("_data") or {}
    if attrs.get("act_quant_kwargs"):
        raise PackError(f"{where}: tensor '{name}'", "int8 with dynamic activation quantisation "
                                                     "(Int8DynamicActivationInt8WeightConfig), not weight-only: "
                                                     "importing it as weight-only would silently change the "
                                                     "model's arithmetic; quantise with Int8WeightOnlyConfig")
    if qdata not in shapes:
        raise PackError(f"{where}: tensor '{qdata}'", f"missing (the int8 values of '{name}')")
    if dtypes[qdata] != "I8" or len(shapes[qdata]) != 2:
        raise PackError(f"{where}: tensor '{qdata}'", f"{dtypes[qdata]} {list(shapes[qdata])}, expected int8 "
                                                      "[out, in]")
    if scale not in shapes:
        raise PackError(f"{where}: tensor '{scale}'", f"absent: the int8 weights of '{name}' lost their scales (the "
                                                      f"scales were stripped on export); {_REEXPORT}")
    rows, cols = shapes[qdata]
    block = attrs.get("block_size")
    if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)
            and rows % block[0] == 0 and cols % block[1] == 0):
        raise PackError(f"{where}: header metadata '{name}'", f"block_size {block}, expected two positive sizes "
                                                              f"dividing the weight's shape [{rows}, {cols}]")
    blocks = (rows // block[0]) * (cols // block[1])
    for key in (scale, zero):
        if key in shapes and int(np.prod(shapes[key])) != blocks:
            raise PackError(f"{where}: tensor '{key}'", f"{int(np.prod(shapes[key]))} values, expected one per "
                                                        f"block_size {block} block ({blocks})")
    return Int8Weight(qdata, scale, zero if zero in shapes else None, (block[0], block[1]))


def read_torchao_layout(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str],
                        metadata: Mapping[str, str], where: str
                        ) -> tuple[dict[str, tuple[int, ...]], dict[str, str], dict[str, Int8Weight]]:
    """Logical view of a torchao-flattened file: returns (shapes, dtypes) by original key, and the
    Int8Tensor weights by original key. Every tensor in the file must be accounted for."""
    if "tensor_names" not in metadata:
        int8 = sorted(n for n in shapes if dtypes[n] == "I8")
        if int8:
            raise PackError(f"{where}: tensor '{int8[0]}'", f"int8 values but no torchao metadata ('tensor_names' is "
                                                            "absent from the safetensors header), so their scales and "
                                                            f"block sizes are unknown: the scales were stripped on "
                                                            f"export; {_REEXPORT}")
        raise PackError(where, "no int8 weights: not a torchao int8 weight-only export (use --from checkpoint for a "
                               "plain fp32/bf16 checkpoint)")
    names = _json_entry(metadata, "tensor_names", where)
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise PackError(f"{where}: header metadata 'tensor_names'", "expected a JSON list of tensor names")
    logical_shapes: dict[str, tuple[int, ...]] = {}
    logical_dtypes: dict[str, str] = {}
    int8: dict[str, Int8Weight] = {}
    used: set[str] = set()
    for name in names:
        record = _json_entry(metadata, name, where)
        kind = record.get("_type") if isinstance(record, dict) else None
        if kind == PLAIN_TENSOR:
            if name not in shapes:
                raise PackError(f"{where}: tensor '{name}'", "listed in tensor_names but absent")
            logical_shapes[name], logical_dtypes[name] = tuple(shapes[name]), dtypes[name]
            used.add(name)
        elif kind == INT8_TENSOR:
            weight = _int8_weight(name, record, shapes, dtypes, where)
            dtype = ((record.get("_data") or {}).get("dtype") or {}).get("_data")
            logical_shapes[name], logical_dtypes[name] = tuple(shapes[weight.qdata]), _TORCH_DTYPES.get(dtype, "F32")
            int8[name] = weight
            used.update(k for k in (weight.qdata, weight.scale, weight.zero_point) if k)
        else:
            raise PackError(f"{where}: tensor '{name}'", f"torchao type {kind!r}; --from torchao-int8wo imports "
                                                         "Int8Tensor weights (Int8WeightOnlyConfig) and plain tensors "
                                                         "only")
    unlisted = sorted(set(shapes) - used)
    if unlisted:
        raise PackError(f"{where}: tensor '{unlisted[0]}'", f"not described by the torchao metadata ({len(unlisted)} "
                                                            "such tensor(s)): the file was not written by "
                                                            "flatten_tensor_state_dict or was edited afterwards")
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


def q8_0_blocks(qdata: np.ndarray, block_scales: np.ndarray) -> np.ndarray:
    """int8 rows + one scale per 32 values ([rows, cols/32]) -> raw Q8_0 (F16 scale, 32 int8)."""
    rows, cols = qdata.shape
    d = block_scales.astype(np.float16).reshape(rows, cols // Q8_BLOCK, 1)
    blocks = np.concatenate([d.view(np.uint8), qdata.astype(np.int8).reshape(rows, -1, Q8_BLOCK).view(np.uint8)],
                            axis=2)
    return np.ascontiguousarray(blocks).reshape(-1)


@dataclass(frozen=True)
class Int8Values:
    """One weight as stored: per element its scale and zero point and (when read) its int8 codes,
    padded like every SigLIP MLP tensor."""

    scale: np.ndarray
    zero: np.ndarray
    q: np.ndarray | None = None

    def q8_0_scales(self) -> tuple[np.ndarray | None, str]:
        """The per-32-block scales when Q8_0 holds this weight exactly, else (None, why not)."""
        rows, cols = self.scale.shape
        if cols % Q8_BLOCK:
            return None, f"input width {cols} not a multiple of 32"
        if np.any(self.zero):
            return None, "non-zero zero points (Q8_0 is symmetric)"
        blocks = self.scale.reshape(rows, -1, Q8_BLOCK)
        if np.any(blocks != blocks[:, :, :1]):
            return None, "scale groups that split a 32-value block"
        d = blocks[:, :, 0]
        if np.any(np.abs(d.astype(np.float16).astype(np.float32) - d) > SCALE_REL_TOL * np.abs(d)):
            return None, "scales not representable in F16"
        return d, ""

    def dequantised(self) -> np.ndarray:
        assert self.q is not None
        return (self.q.astype(np.float32) - self.zero) * self.scale


class Int8Loader:
    """int8 weights by pack name, read on demand."""

    def __init__(self, path: Path, sources: Mapping[str, SourceTensor], weights: Mapping[str, Int8Weight], cfg: Any):
        self.path, self.sources, self.weights, self.cfg = path, sources, weights, cfg

    def __call__(self, name: str, codes: bool = True) -> Int8Values:
        """codes=False reads only scales and zero points (enough to choose the storage type)."""
        from safetensors import safe_open

        w = self.weights[self.sources[name].key]
        with safe_open(str(self.path), framework="pt") as f:
            rows, cols = f.get_slice(w.qdata).get_shape()
            q = to_numpy(f.get_tensor(w.qdata)).astype(np.int8) if codes else np.empty((rows, cols), np.int8)
            scale = to_numpy(f.get_tensor(w.scale)).astype(np.float32)
            zero = to_numpy(f.get_tensor(w.zero_point)).astype(np.float32) if w.zero_point else np.zeros(1, np.float32)

        def per_element(v: np.ndarray) -> np.ndarray:
            if v.size == 1:
                return np.full(q.shape, v.reshape(-1)[0], np.float32)
            return np.repeat(np.repeat(v.reshape(rows // w.block[0], cols // w.block[1]), w.block[0], axis=0),
                             w.block[1], axis=1)

        v = self.cfg.vision
        padded = pad_vision_mlp(name, q, v.intermediate_size, v.intermediate_size_stored)
        # scales of padded rows/columns repeat their neighbours: the values there are 0 either way,
        # and a constant scale keeps the last real 32-block storable as Q8_0.
        widths = [(0, p - s) for p, s in zip(padded.shape, q.shape)]
        return Int8Values(np.pad(per_element(scale), widths, mode="edge"), np.pad(per_element(zero), widths, mode="edge"),
                          padded if codes else None)


def import_torchao_int8wo(src: str | Path, out: str | Path, robot: str = "ur3", overwrite: bool = False,
                          golden: bool | None = None, tokenizer: Path | None = None,
                          norm_stats: Path | None = None) -> Path:
    """Write a pack at `out` from a torchao int8 weight-only (Shallow-π pruned) pi0.5 checkpoint."""
    weights = weights_file(src, "a torchao int8 weight-only pi0.5 export")
    raw_shapes, raw_dtypes, metadata = safetensors_header(weights)
    shapes, dtypes, int8 = read_torchao_layout(raw_shapes, raw_dtypes, metadata, str(weights))
    ck = read_checkpoint(weights, shapes, dtypes, robot, tokenizer, norm_stats,
                         check_layers=lambda sources: check_layer_counts(sources, str(weights)))
    floats = SourceLoader(weights, ck.sources, ck.cfg)
    ints = Int8Loader(weights, ck.sources, int8, ck.cfg)
    matrix = matrix_type("auto", {d for k, d in dtypes.items() if k not in int8})
    planned, exceptions = [], {}
    for name in ck.specs:
        shape = ck.shapes[name]
        if ck.sources[name].key not in int8:
            planned.append(PlannedTensor(name, shape, "F32" if len(shape) == 1 else matrix,
                                         lambda n=name: floats(n)))
            continue
        values = ints(name, codes=False)
        if not (np.all(np.isfinite(values.scale)) and np.all(np.isfinite(values.zero))):
            key = int8[ck.sources[name].key]
            raise PackError(f"{weights}: tensor '{key.scale}'", "holds inf/nan scales or zero points: the source file "
                                                                "is damaged")
        block_scales, why = values.q8_0_scales()
        if block_scales is not None:
            planned.append(PlannedTensor(name, shape, "Q8_0", lambda n=name: _q8_0(ints(n))))
        else:
            exceptions[name] = f"F16 (dequantised int8): {why}"
            planned.append(PlannedTensor(name, shape, "F16", lambda n=name: ints(n).dequantised()))
    granularity = sorted({_granularity(w, shapes[k]) for k, w in int8.items()})
    return write_pack(ck, out, planned, "torchao-int8wo", {
        "imported_from": "torchao-int8wo", "robot_layout": robot, "int8_tensors": len(int8),
        "int8_granularity": granularity, "llm_layers": ck.cfg.llm.num_layers, "expert_layers": ck.cfg.expert.num_layers,
        "int8_storage": "Q8_0: int8 values exact, the int8 scale as the F16 block scale"}, exceptions, overwrite, golden)


def _q8_0(values: Int8Values) -> np.ndarray:
    block_scales, why = values.q8_0_scales()
    assert block_scales is not None and values.q is not None, why  # decided from the same scales when planned
    return q8_0_blocks(values.q, block_scales)


def _granularity(weight: Int8Weight, shape: tuple[int, ...]) -> str:
    rows, cols = weight.block
    if (rows, cols) == tuple(shape):
        return "per_tensor"
    return "per_row" if (rows, cols) == (1, shape[1]) else f"block {rows}x{cols}"
