"""What every execution target implements. A target is one folder + one registry line."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
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

    @property
    def batches(self) -> bool:
        """True when sample_actions_batch runs several observations in one forward pass."""
        return False

    def sample_actions_batch(self, batch: Sequence[Any]) -> list[BackendResult]:
        """Several inputs objects in one forward pass per stage (each weight read once for all of
        them); one result per input, equal to sample_actions on each alone within the target's
        tolerance. Targets that cannot do that in one pass refuse: a loop would only add waiting."""
        raise TargetUnavailableError(f"target '{self.name}' cannot run several observations in one forward pass")

    def describe(self) -> dict[str, Any]:
        """Target-specific facts for Policy.info (threads, memory, build features)."""
        return {}

    def close(self) -> None:
        """Release native resources; idempotent."""
