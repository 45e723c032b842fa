"""What every execution target implements. A target is one folder + one registry line."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge.errors import TargetUnavailableError


def check_threads(threads: Any) -> None:
    """The `threads` option every CPU target takes: a positive integer."""
    if not isinstance(threads, int) or threads <= 0:
        raise TargetUnavailableError(f"threads must be a positive integer, got {threads!r}")


@dataclass
class BackendResult:
    """Normalised model-space actions [horizon, model_action_dim] and per-stage wall times."""

    actions: np.ndarray
    latency_ms: dict[str, float] = field(default_factory=dict)


class Backend(ABC):
    """Runs one family's model graph on one target. Pre/post-processing is NOT its job: the
    family does that once, in Python, identically for every target."""

    name: str

    @abstractmethod
    def sample_actions(self, inputs: Any) -> BackendResult:
        """Run vision -> prefix KV -> flow-matching expert for the family's inputs object."""

    def describe(self) -> dict[str, Any]:
        """Target-specific facts for Policy.info (threads, memory, build features)."""
        return {}

    def close(self) -> None:
        """Release native resources; idempotent."""
