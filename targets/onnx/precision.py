"""In which number format an ONNX export holds each weight matrix, and why.

TensorRT-RTX (and full TensorRT with a strongly typed network) takes every layer's precision from
the graph itself: there is no "build in FP16" switch. So the precision of an engine is decided
here, at export time, per matrix:

- `fp32`: every weight dequantised to float32 (the reference's arithmetic; what the `onnx` target
  runs and checks against the golden chunk).
- `fp16` / `bf16`: matrix products run in that type (inputs cast down, results cast back to
  float32); norms, softmax, RoPE and the residual stream stay float32 (Gemma's activations
  overflow float16 there). Weight matrices keep the pack's own precision where ONNX has a form
  for it: float tensors (F32/F16/BF16) become the product type; 8-bit-or-more GGUF blocks
  (Q8_0, Q6_K, Q5_K...) become INT8 weight-only with one scale per output channel; 4-bit-or-less
  blocks (Q4_K, Q3_K, Q4_0...) become INT4 weight-only with one scale per 32 input columns
  (blocked DequantizeLinear, opset 21). Both are explicit Q/DQ: no calibration exists or is
  needed, activations are never quantised. The weight-only forms requantise the pack's values
  (GGUF K-quant scales/mins have no ONNX form), so they are one rounding further from the pack
  than ggml's kernels; the export measures and records how far (`golden_rel_l2`).
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx import TensorProto

from vla_edge.errors import PackError

INT4_BLOCK = 32  # input columns per INT4 scale: a GGUF K-quant's sub-block
INT8_SOURCE_TYPES = frozenset({"Q8_0", "Q8_1", "Q8_K", "Q6_K", "Q5_K", "Q5_0", "Q5_1"})
INT4_SOURCE_TYPES = frozenset({"Q4_K", "Q4_0", "Q4_1", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS"})
FLOAT_SOURCE_TYPES = frozenset({"F32", "F16", "BF16"})


@dataclass(frozen=True)
class ExportPrecision:
    """The product type of an export. `name` is what users type and file names carry."""

    name: str
    onnx_type: int  # element type of the matrix products
    opset: int

    @property
    def is_reference(self) -> bool:
        return self.name == "fp32"

    def weight_form(self, ggml_type: str | None, in_dim: int) -> str:
        """'float' (the product type), 'int8' or 'int4' for a matrix stored as `ggml_type`."""
        if self.is_reference or ggml_type is None or ggml_type in FLOAT_SOURCE_TYPES:
            return "float"
        if ggml_type in INT4_SOURCE_TYPES:
            return "int4" if in_dim % INT4_BLOCK == 0 else "int8"
        if ggml_type in INT8_SOURCE_TYPES:
            return "int8"
        raise PackError(f"tensor type {ggml_type}", "no ONNX weight form for this GGUF type (expected one of "
                        f"{sorted(FLOAT_SOURCE_TYPES | INT8_SOURCE_TYPES | INT4_SOURCE_TYPES)})")


PRECISIONS: dict[str, ExportPrecision] = {
    "fp32": ExportPrecision("fp32", TensorProto.FLOAT, 17),
    # opset 21: the first with INT4 and blocked DequantizeLinear (TensorRT 10 / TensorRT-RTX parse it)
    "fp16": ExportPrecision("fp16", TensorProto.FLOAT16, 21),
    "bf16": ExportPrecision("bf16", TensorProto.BFLOAT16, 21),
}


def require_precision(name: str, field: str = "--precision") -> ExportPrecision:
    if name not in PRECISIONS:
        raise PackError(field, f"expected one of {sorted(PRECISIONS)}, got '{name}'")
    return PRECISIONS[name]


def weight_label(forms: dict[str, int]) -> str:
    """'-w4w8'-style suffix naming the weight-only forms a graph uses ('' when none)."""
    bits = [b for b, form in (("4", "int4"), ("8", "int8")) if forms.get(form)]
    return "-w" + "w".join(bits) if bits else ""
