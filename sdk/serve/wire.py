"""msgpack with NumPy arrays, in the encoding openpi's policy server and client use, so an
existing `openpi_client.WebsocketClientPolicy` talks to `vla-edge serve` unchanged.

An array travels as a map {b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": [..]}; a NumPy scalar as {b"__npgeneric__": True, b"data": value, b"dtype": dtype.str}.
msgpack carries data, never code (unlike pickle), so a message from the network cannot execute
anything; object, void and complex dtypes are refused both ways.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

REFUSED_KINDS = frozenset("OVc")


class WireError(ValueError):
    """A message that is not msgpack, or an array whose dtype/shape/data do not agree."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in REFUSED_KINDS:
        raise WireError(f"cannot send dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": array.dtype.str, b"shape": list(array.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
            if dtype.kind in REFUSED_KINDS:
                raise WireError(f"array dtype {dtype} is not accepted")
            shape = tuple(int(n) for n in obj[b"shape"])
            return np.frombuffer(obj[b"data"], dtype=dtype).reshape(shape).copy()
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"malformed array ({exc})") from exc
    if b"__npgeneric__" in obj:
        try:
            return np.dtype(obj[b"dtype"]).type(obj[b"data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"malformed NumPy scalar ({exc})") from exc
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_encode)


def unpackb(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, object_hook=_decode)
    except WireError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise WireError(f"not a msgpack message ({type(exc).__name__}: {exc})") from exc
