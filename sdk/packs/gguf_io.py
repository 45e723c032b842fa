"""GGUF access through the `gguf` package, with every failure turned into a PackError.

A truncated or corrupted file must never crash the process or surface a numpy traceback, so
reading is wrapped once here and the rest of the code base gets either tensors or a PackError
naming the file and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quant_shape_to_byte_shape

from ..errors import PackError

FLOAT_TYPES = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order [out, in]
    ggml_type: str  # "F32", "Q4_K", ...
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape))

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.n_bytes / max(self.n_elements, 1)


class GGUFFile:
    """Read-only, memory-mapped view of one GGUF file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise PackError(str(self.path), "weights file not found")
        try:
            self._reader = GGUFReader(self.path, "r")
        except Exception as exc:  # gguf raises ValueError/IndexError/struct errors on damage
            raise PackError(str(self.path), f"not a readable GGUF file ({type(exc).__name__}: {exc})") from exc
        self._tensors = {t.name: t for t in self._reader.tensors}
        self._infos = {
            t.name: TensorInfo(t.name, tuple(int(d) for d in reversed(t.shape.tolist())), t.tensor_type.name,
                               int(t.n_bytes))
            for t in self._reader.tensors
        }
        self._check_extent()

    def _check_extent(self) -> None:
        size = self.path.stat().st_size
        for t in self._reader.tensors:
            if t.data_offset + t.n_bytes > size:
                raise PackError(
                    str(self.path),
                    f"tensor '{t.name}' ends at byte {t.data_offset + t.n_bytes} but the file has {size} bytes"
                    " (truncated?)",
                )

    @property
    def metadata(self) -> dict[str, Any]:
        """Scalar/string/array key-values (GGUF header fields excluded)."""
        out: dict[str, Any] = {}
        for name, field in self._reader.fields.items():
            if name.startswith("GGUF."):
                continue
            try:
                out[name] = field.contents()
            except Exception as exc:
                raise PackError(str(self.path), f"metadata key '{name}' is unreadable: {exc}") from exc
        return out

    def tensor_infos(self) -> dict[str, TensorInfo]:
        return dict(self._infos)

    def raw(self, name: str) -> tuple[np.ndarray, GGMLQuantizationType]:
        """The tensor's stored bytes/values as a memory-mapped array and its ggml type."""
        t = self._tensors.get(name)
        if t is None:
            raise PackError(str(self.path), f"tensor '{name}' is missing")
        return t.data, t.tensor_type

    def float32(self, name: str) -> np.ndarray:
        """Dequantised float32 copy in numpy order [out, in] (any type gguf can decode)."""
        data, qtype = self.raw(name)
        try:
            if qtype == GGMLQuantizationType.F32:
                arr = np.array(data, dtype=np.float32)
            else:
                arr = dequantize(data, qtype).astype(np.float32, copy=False)
        except NotImplementedError as exc:
            raise PackError(str(self.path), f"tensor '{name}' has type {qtype.name} which cannot be decoded") from exc
        return arr.reshape(self._infos[name].shape)

    def close(self) -> None:
        # np.memmap closes with its last reference
        self._reader = None  # type: ignore[assignment]


def _value_type(value: Any) -> GGUFValueType:
    if isinstance(value, bool):
        return GGUFValueType.BOOL
    if isinstance(value, int):
        return GGUFValueType.UINT32
    if isinstance(value, float):
        return GGUFValueType.FLOAT32
    if isinstance(value, str):
        return GGUFValueType.STRING
    if isinstance(value, (list, tuple)):
        return GGUFValueType.ARRAY
    raise TypeError(f"unsupported metadata value {value!r}")


@dataclass(frozen=True)
class PlannedTensor:
    """A tensor to be written: its name, numpy shape, ggml type and a producer of its data.

    `produce()` returns float32 values (converted/quantised here) or, for pre-quantised data,
    the raw uint8 blocks; it is called once, in file order, so a 3B-parameter file is written
    one tensor at a time without ever holding the model in memory.
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: str
    produce: Callable[[], np.ndarray]

    @property
    def n_bytes(self) -> int:
        qtype = GGMLQuantizationType[self.ggml_type]
        block, type_size = GGML_QUANT_SIZES[qtype]
        n = int(np.prod(self.shape))
        return n // block * type_size


def encode(values: np.ndarray, ggml_type: str) -> np.ndarray:
    """float32 -> stored representation for the float types the writer produces itself."""
    if ggml_type == "F32":
        return np.ascontiguousarray(values, dtype=np.float32)
    if ggml_type == "F16":
        return np.ascontiguousarray(values, dtype=np.float16)
    from gguf.quants import quantize

    return quantize(np.ascontiguousarray(values, dtype=np.float32), GGMLQuantizationType[ggml_type])


def write_gguf(
    path: Path,
    arch: str,
    metadata: dict[str, Any],
    tensors: Iterable[PlannedTensor],
    on_tensor: Callable[[PlannedTensor], None] | None = None,
) -> None:
    """Stream tensors into a new GGUF file (header first, then data tensor by tensor)."""
    planned = list(tensors)
    writer = GGUFWriter(path, arch)
    for key, value in metadata.items():
        vtype = _value_type(value)
        if vtype == GGUFValueType.ARRAY:
            writer.add_array(key, list(value))
        else:
            writer.add_key_value(key, value, vtype)
    for t in planned:
        qtype = GGMLQuantizationType[t.ggml_type]
        if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            dtype = np.float32 if qtype == GGMLQuantizationType.F32 else np.float16
            writer.add_tensor_info(t.name, t.shape, np.dtype(dtype), t.n_bytes)
        else:
            byte_shape = quant_shape_to_byte_shape(t.shape, qtype)
            writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), t.n_bytes, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in planned:
        data = t.produce()
        if data.dtype != np.uint8:
            data = encode(data, t.ggml_type)
        if data.nbytes != t.n_bytes:
            raise PackError(t.name, f"produced {data.nbytes} bytes, expected {t.n_bytes} for {t.ggml_type}{t.shape}")
        writer.write_tensor_data(data)
        if on_tensor:
            on_tensor(t)
    writer.close()
