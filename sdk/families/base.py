"""The family interface: what one model architecture must provide to the rest of the SDK.

A family owns its hyper-parameters, its tensor inventory and its pre/post-processing; targets
own only the graph execution. pi0.5 is the first family; OpenVLA-OFT and GR00T N1.5 plug in
here with their own config, tensors and processors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..packs.pack import Pack
    from ..types import Observation


class Family(ABC):
    name: str

    @abstractmethod
    def parse_config(self, data: dict[str, Any]) -> Any:
        """Validate the manifest's `config` section into the family's typed config."""

    @abstractmethod
    def tensor_specs(self, config: Any) -> dict[str, Any]:
        """Every tensor the weights file must hold, by name (see pi05/tensors.py)."""

    @abstractmethod
    def gguf_header(self, config: Any) -> tuple[str, dict[str, Any]]:
        """(architecture, metadata key-values) a weights file for this config carries; tools that
        rewrite weights (quantize, importers) write it so every loader reads the same header."""

    @abstractmethod
    def preprocessor(self, pack: "Pack") -> "Preprocessor":
        """Build the (stateful: tokenizer, stats) observation -> model-input converter."""

    @abstractmethod
    def postprocess(self, pack: "Pack", model_actions: np.ndarray, obs: "Observation") -> np.ndarray:
        """Model-space actions -> robot-unit actions for the pack's action space."""


class Preprocessor(ABC):
    @abstractmethod
    def __call__(self, obs: "Observation", noise: np.ndarray) -> Any:
        """Observation (validated here) + initial noise -> the family's backend input object."""

    @abstractmethod
    def noise_shape(self) -> tuple[int, ...]: ...
