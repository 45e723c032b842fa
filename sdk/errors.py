"""One exception family so callers (CLI, C ABI, robot loop) can fail closed on any of them."""

from __future__ import annotations


class VlaEdgeError(Exception):
    """Base of every error vla-edge raises on purpose; the CLI maps it to a non-zero exit."""


class ObservationError(VlaEdgeError, ValueError):
    """An observation does not match what the policy needs; names field, expected and got."""

    def __init__(self, field: str, expected: str, got: str):
        self.field, self.expected, self.got = field, expected, got
        super().__init__(f"observation field '{field}': expected {expected}, got {got}")


class PackError(VlaEdgeError):
    """A pack (manifest, weights, tokenizer, stats) is missing, malformed or inconsistent."""

    def __init__(self, where: str, problem: str):
        self.where, self.problem = where, problem
        super().__init__(f"{where}: {problem}")


class TargetUnavailableError(VlaEdgeError):
    """A target is unknown or cannot run on this machine; the message lists what can."""


class ConfigError(VlaEdgeError, ValueError):
    """A user-supplied configuration file or option is invalid."""

    def __init__(self, where: str, problem: str):
        self.where, self.problem = where, problem
        super().__init__(f"{where}: {problem}")
