"""Initializers written to an external weight file the moment they are made.

protobuf cannot serialise a message above 2 GiB, and a full pi0.5 prefix graph holds ~5 GB of
weights even in float16; building the whole ModelProto first (and asking it for its ByteSize,
which serialises it) both fails and needs the weights twice in memory. Here every initializer
above `INLINE_BYTES` goes straight to `<stage>.weights` and the graph keeps only its name, type,
shape and (offset, length): the graph proto stays a few MB whatever the model's size, and peak
memory is one tensor at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from onnx import TensorProto, helper

INLINE_BYTES = 1024  # smaller initializers (constants, shapes) stay inside the graph
ALIGN = 64  # byte alignment of each tensor in the weight file (lets readers memory-map it)


class ExternalWeights:
    """Appends raw tensor bytes to one file and returns TensorProtos that point into it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: BinaryIO = self.path.open("wb")
        self.bytes_written = 0

    def tensor(self, name: str, elem_type: int, shape: tuple[int, ...], raw: bytes | np.ndarray) -> TensorProto:
        data = memoryview(np.ascontiguousarray(raw).view(np.uint8).reshape(-1)) if isinstance(raw, np.ndarray) else memoryview(raw)
        if len(data) < INLINE_BYTES:
            return helper.make_tensor(name, elem_type, list(shape), bytes(data), raw=True)
        pad = -self.bytes_written % ALIGN
        if pad:
            self._file.write(b"\0" * pad)
            self.bytes_written += pad
        offset = self.bytes_written
        self._file.write(data)
        self.bytes_written += len(data)
        proto = TensorProto(name=name, data_type=elem_type, dims=list(shape))
        proto.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.path.name), ("offset", str(offset)), ("length", str(len(data)))):
            entry = proto.external_data.add()
            entry.key, entry.value = key, value
        return proto

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self.bytes_written == 0:
            self.path.unlink(missing_ok=True)  # everything fitted inline
