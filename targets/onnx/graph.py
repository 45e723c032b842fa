"""A small ONNX graph builder with the pi0.5 building blocks, each the same arithmetic as the
reference's `ops.py` (so the exported graphs can be checked against it op for op).

Opset 17 for float32 graphs (the newest that TensorRT 8.6 on JetPack 6 parses fully, and the first
with LayerNormalization); opset 21 for reduced-precision graphs (INT4 and blocked
DequantizeLinear). Weights are laid out for `MatMul(x, W^T)` in the number format the export's
`ExportPrecision` gives each matrix (precision.py), and large ones are streamed to an external
weight file as they are made (external.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import ml_dtypes  # onnx's own dependency: numpy's bfloat16
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .external import ExternalWeights
from .precision import INT4_BLOCK, PRECISIONS, ExportPrecision

NUMPY_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.BFLOAT16: ml_dtypes.bfloat16}


def _positive_scale(scale: np.ndarray, scale_type: type) -> np.ndarray:
    """The scale as stored; an all-zero group (scale 0, or below the type's range) gets 1, since
    TensorRT refuses scales that are not positive. Its codes are 0 either way."""
    stored = np.asarray(scale, dtype=np.float32).astype(scale_type)
    stored[stored.astype(np.float32) <= 0] = 1
    return stored


def _symmetric_codes(w: np.ndarray, scale: np.ndarray, limit: int) -> np.ndarray:
    """round(w / scale) clipped to [-limit - 1, limit]."""
    return np.clip(np.rint(w / scale), -limit - 1, limit).astype(np.int8)


def int8_per_channel(wt: np.ndarray, scale_type: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """wt [in, out] -> (int8 codes [in, out], scale [out] in `scale_type`): one symmetric scale per
    output column; codes are rounded against the scale as stored."""
    scale = _positive_scale(np.abs(wt).max(axis=0) / np.float32(127), scale_type)
    return _symmetric_codes(wt, scale.astype(np.float32)[None, :], 127), scale


def int4_blocked(wt: np.ndarray, scale_type: type = np.float32, block: int = INT4_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """wt [in, out] -> (int4 codes in int8 [in, out], scale [in / block, out] in `scale_type`): one
    symmetric scale per `block` consecutive input rows of each output column."""
    k, n = wt.shape
    scale = _positive_scale(np.abs(wt.reshape(k // block, block, n)).max(axis=1) / np.float32(7), scale_type)
    return _symmetric_codes(wt, np.repeat(scale.astype(np.float32), block, axis=0), 7), scale


def pack_int4(codes: np.ndarray) -> bytes:
    """ONNX INT4 raw layout: two values per byte, the first in the low nibble (row-major order)."""
    flat = codes.reshape(-1).astype(np.uint8) & 0xF
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()


class GraphBuilder:
    def __init__(self, name: str, weights: ExternalWeights | None = None, precision: ExportPrecision = PRECISIONS["fp32"],
                 weight_types: Callable[[str], str] | None = None, act_scales: dict[str, float] | None = None):
        """weights: stream large initializers there (None: keep them in the graph, small graphs only);
        weight_types: tensor name -> its GGUF type, which decides each matrix's weight form;
        act_scales: weight name -> INT8 scale of its input activation (from a calibration): those
        products become W8A8 explicit Q/DQ (activation per tensor, weight per output channel)."""
        self.name = name
        self.act_scales = act_scales or {}
        self.external = weights
        self.precision = precision
        self.weight_types = weight_types
        self.weight_forms: Counter[str] = Counter()
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0
        self._consts: dict[tuple, str] = {}

    # ------------------------------------------------------------------ plumbing

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, n_out: int = 1, **attrs) -> str | list[str]:
        outs = [self.fresh(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def tensor(self, name: str, array: np.ndarray) -> str:
        array = np.array(array, order="C")  # keeps 0-d
        if self.external is None:
            self.initializers.append(numpy_helper.from_array(array, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(array.dtype)
            self.initializers.append(self.external.tensor(name, elem, array.shape, array))
        return name

    def int4_tensor(self, name: str, codes: np.ndarray) -> str:
        packed = pack_int4(codes)
        if self.external is None:
            self.initializers.append(helper.make_tensor(name, TensorProto.INT4, list(codes.shape), packed, raw=True))
        else:
            self.initializers.append(self.external.tensor(name, TensorProto.INT4, codes.shape, packed))
        return name

    def const(self, value, dtype=np.float32) -> str:
        """A small constant initializer, shared by value."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.tensor(self.fresh("const"), array)
        return self._consts[key]

    def input(self, name: str, elem: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, value: str, name: str, elem: int, shape: list) -> None:
        self.nodes.append(helper.make_node("Identity", [value], [name]))
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.precision.opset)],
                                  producer_name="vla-edge")
        # 8: readable by onnxruntime >= 1.14 and TensorRT 8.6; opset 21 needs IR 10
        model.ir_version = 8 if self.precision.opset <= 17 else 10
        return model

    # ------------------------------------------------------------------ arithmetic

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b])

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b])

    def reshape(self, x: str, shape: list[int]) -> str:
        return self.op("Reshape", [x, self.const(shape, np.int64)], "reshape")

    def transpose(self, x: str, perm: list[int]) -> str:
        return self.op("Transpose", [x], "transpose", perm=perm)

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, in_dim: int, name: str) -> str:
        """x @ W^T + b. Columns of W beyond the activation width `in_dim` are K-quant alignment
        padding (the reference zero-pads x instead); they must be zero and are dropped."""
        if weight.shape[1] > in_dim:
            if np.any(weight[:, in_dim:]):
                raise ValueError(f"{name}: columns {in_dim}..{weight.shape[1]} should be zero padding")
            weight = weight[:, :in_dim]
        act_scale = self.act_scales.get(name + ".weight")
        if act_scale is not None:
            self.weight_forms["w8a8"] += 1
            y = self.op("MatMul", [self._qdq_activation(x, act_scale), self._low_weight(weight.T.astype(np.float32), "int8", name)],
                        "matmul")
            return y if bias is None else self.add(y, self.tensor(name + ".bias", bias.astype(np.float32)))
        ggml_type = self.weight_types(name + ".weight") if self.weight_types else None
        form = self.precision.weight_form(ggml_type, in_dim)
        self.weight_forms[form] += 1
        if self.precision.is_reference:
            y = self.op("MatMul", [x, self.tensor(name + ".T", weight.T.astype(np.float32))], "matmul")
        else:  # the product in the export's type; everything around it stays float32
            low = self.op("Cast", [x], "cast", to=self.precision.onnx_type)
            y = self.op("MatMul", [low, self._low_weight(weight.T.astype(np.float32), form, name)], "matmul")
            y = self.op("Cast", [y], "cast", to=TensorProto.FLOAT)
        return y if bias is None else self.add(y, self.tensor(name + ".bias", bias.astype(np.float32)))

    def _qdq_activation(self, x: str, scale: float) -> str:
        """x rounded to symmetric INT8 with one calibrated scale (saturating), back in float32: the
        explicit Q/DQ pair TensorRT fuses into an INT8 product."""
        s, zero = self.const(np.float32(scale)), self.const(np.int8(0), np.int8)
        return self.op("DequantizeLinear", [self.op("QuantizeLinear", [x, s, zero], "q8x"), s, zero], "dq8x")

    def _low_weight(self, wt: np.ndarray, form: str, name: str) -> str:
        """wt [in, out] as a tensor of the product type: stored in it, or dequantised from INT8/INT4."""
        product = NUMPY_TYPES[self.precision.onnx_type]
        if form == "float":
            return self.tensor(name + ".T", wt.astype(product))
        if form == "int8":
            codes, scale = int8_per_channel(wt, product)
            return self.op("DequantizeLinear", [self.tensor(name + ".T.q8", codes), self.tensor(name + ".T.s8", scale)],
                           "dq", axis=1)
        codes, scale = int4_blocked(wt, product)
        return self.op("DequantizeLinear", [self.int4_tensor(name + ".T.q4", codes), self.tensor(name + ".T.s4", scale)],
                       "dq", axis=0, block_size=INT4_BLOCK)

    def layer_norm(self, x: str, weight: np.ndarray, bias: np.ndarray, eps: float, name: str) -> str:
        return self.op("LayerNormalization", [x, self.tensor(name + ".w", weight), self.tensor(name + ".b", bias)],
                       "layernorm", axis=-1, epsilon=float(eps))

    def rms_normalize(self, x: str, eps: float) -> str:
        if self.precision.opset >= 18:  # axes became an input in opset 18
            mean_sq = self.op("ReduceMean", [self.mul(x, x), self.const([-1], np.int64)], "meansq", keepdims=1)
        else:
            mean_sq = self.op("ReduceMean", [self.mul(x, x)], "meansq", axes=[-1], keepdims=1)
        return self.op("Div", [x, self.op("Sqrt", [self.add(mean_sq, self.const(eps))])], "rms")

    def gemma_rms_norm(self, x: str, weight: np.ndarray, eps: float, name: str) -> str:
        return self.mul(self.rms_normalize(x, eps), self.tensor(name + ".1pw", np.float32(1.0) + weight))

    def gelu_tanh(self, x: str) -> str:
        cube = self.mul(x, self.mul(x, x))
        inner = self.mul(self.add(x, self.mul(cube, self.const(0.044715))), self.const(math.sqrt(2.0 / math.pi)))
        return self.mul(self.mul(x, self.const(0.5)), self.add(self.const(1.0), self.op("Tanh", [inner])))

    def silu(self, x: str) -> str:
        return self.op("Div", [x, self.add(self.const(1.0), self.op("Exp", [self.op("Neg", [x])]))], "silu")

    def split_last(self, x: str, sizes: list[int]) -> list[str]:
        return self.op("Split", [x, self.const(sizes, np.int64)], "split", n_out=len(sizes), axis=-1)

    def rope(self, x: str, cos: str, sin: str, head_dim: int) -> str:
        """Rotate-half RoPE; x [B, T, H, d], cos/sin [T, 1, d] (gathered from float64-built tables)."""
        first, second = self.split_last(x, [head_dim // 2, head_dim // 2])
        rotated = self.op("Concat", [self.op("Neg", [second]), first], "rot", axis=-1)
        return self.add(self.mul(x, cos), self.mul(rotated, sin))

    def attention(self, q: str, k: str, v: str, heads: int, kv_heads: int, head_dim: int) -> str:
        """Unmasked softmax attention; q [B, Tq, H, d], k/v [B, Tk, KVH, d] -> [B, Tq, H*d].
        KV heads are repeated to H in the reference's order (kv head j serves q heads jG..jG+G-1)."""
        group = heads // kv_heads

        def heads_first(t: str, n: int) -> str:
            t = self.transpose(t, [0, 2, 1, 3])  # [B, n, T, d]
            if group == 1 or n == heads:
                return t
            t = self.op("Unsqueeze", [t, self.const([2], np.int64)], "unsq")  # [B, KVH, 1, T, d]
            shape = self.op("Shape", [t])
            dims = self.split_last(shape, [1, 1, 1, 1, 1])
            target = self.op("Concat", [dims[0], dims[1], self.const([group], np.int64), dims[3], dims[4]], "shape", axis=0)
            t = self.op("Expand", [t, target], "expand")
            return self.reshape(t, [0, heads, -1, head_dim])

        qh, kh, vh = heads_first(q, heads), heads_first(k, kv_heads), heads_first(v, kv_heads)
        scores = self.op("MatMul", [qh, self.transpose(kh, [0, 1, 3, 2])], "scores")
        scores = self.op("Div", [scores, self.const(np.sqrt(np.float32(head_dim)))], "scaled")
        probs = self.op("Softmax", [scores], "probs", axis=-1)
        out = self.transpose(self.op("MatMul", [probs, vh], "attn"), [0, 2, 1, 3])  # [B, Tq, H, d]
        return self.reshape(out, [0, 0, heads * head_dim])


FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
