"""`vla-edge serve`: a pack on a target behind a websocket (openpi's protocol, msgpack-numpy)."""

from .messages import KeyMap
from .server import PolicyServer

__all__ = ["KeyMap", "PolicyServer"]
