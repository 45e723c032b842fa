"""vla-edge: run quantized vision-language-action policies on edge targets, safely."""

from .errors import ConfigError, ObservationError, PackError, TargetUnavailableError, VlaEdgeError
from .policy import Policy, PolicyInfo, load_policy
from .types import ActionChunk, Observation

__all__ = [
    "ActionChunk", "ConfigError", "Observation", "ObservationError", "PackError", "Policy", "PolicyInfo",
    "TargetUnavailableError", "VlaEdgeError", "load_policy",
]
__version__ = "0.1.0"
