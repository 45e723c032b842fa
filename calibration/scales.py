"""INT8 activation scales from a calibration file, for explicit Q/DQ exports (TensorRT INT8).

Symmetric per-tensor scales: s = P / 127 with P the `percentile` of |x| over every calibration
row (and every flow step: one ONNX expert graph serves all steps), so the rare larger values
saturate instead of widening every step. Only the matrices every quantisation recipe quantises
get one; the `sensitive` ones (patch/position embeddings, projector, action in/out, time MLP,
AdaRMSNorm modulation) stay float, as they stay F16 in the GGUF recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .calibfile import load_calibration
from .matching import check_matches, input_widths

DEFAULT_PERCENTILE = 99.99
INT8_MAX = 127.0


def quantized_matrices(pack: Any) -> list[str]:
    specs = pack.family.tensor_specs(pack.config)
    return [name for name in input_widths(pack) if not specs[name].sensitive]


def int8_activation_scales(calib_path: Path, pack: Any, percentile: float = DEFAULT_PERCENTILE) -> dict[str, float]:
    """weight name -> INT8 scale of its input, after refusing a calibration of another pack."""
    calib = load_calibration(calib_path)
    needed = quantized_matrices(pack)
    check_matches(calib, pack, needed)
    return {name: max(calib.tensors[name].percentile(percentile), 1e-12) / INT8_MAX for name in needed
            if name in calib.tensors}  # a tensor the calibration lists as unused stays float
