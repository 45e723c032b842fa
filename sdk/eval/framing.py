"""Length-prefixed msgpack-numpy frames over a byte stream (the simulator worker's pipes).

Imported by path from `sim_worker.py`, which runs in the simulator's own Python environment
where vla_edge is not installed: keep this module free of vla_edge imports except `wire`'s
file, which is loaded the same way.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, Callable

HEADER = struct.Struct(">Q")
MAX_FRAME = 1 << 30


class FrameError(EOFError):
    """The stream ended or carried a frame that cannot be read."""


def write_frame(stream: BinaryIO, message: Any, packb: Callable[[Any], bytes]) -> None:
    data = packb(message)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise FrameError(f"stream ended with {left} of {n} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO, unpackb: Callable[[bytes], Any]) -> Any:
    (size,) = HEADER.unpack(_read_exact(stream, HEADER.size))
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    return unpackb(_read_exact(stream, size))
