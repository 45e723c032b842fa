"""`vla-edge serve`: a pack on a target behind a websocket (openpi's protocol, msgpack-numpy)."""

from .access import ApiKey, load_api_key, tls_context
from .batching import Batching, BatchPolicy
from .messages import KeyMap
from .server import PolicyServer
from .session import ConnectionLimits

__all__ = ["ApiKey", "BatchPolicy", "Batching", "ConnectionLimits", "KeyMap", "PolicyServer", "load_api_key",
           "tls_context"]
